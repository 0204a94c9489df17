package etcdconn

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// FuzzParseEndpoints: any input either fails with a one-line error or gives endpoints of exactly
// the documented forms, host:port or http(s)://host:port (a trailing slash allowed), which parse
// back to themselves.
func FuzzParseEndpoints(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:2379", "https://10.0.0.1:2379,https://10.0.0.2:2379", " http://[::1]:2379/ , etcd-0.etcd:2379",
		"http://[fe80::1%25eth0]:2379", "", ",", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "ftp://h:1",
		"http://h:1/path", "http://u:p@h:1", "http://h:1?q=1", "http://h:1#frag", "http://h:1?", "h:+1", "h:0x10",
		"a b:1", "h\x00:1", "http://a%20b:1", "http://:1", "[::1]:2379", "http://h:2379\n", "héllo:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		eps, err := ParseEndpoints(list)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("ParseEndpoints(%q): error is not one line: %q", list, err)
			}
			return
		}
		if len(eps) == 0 {
			t.Fatalf("ParseEndpoints(%q) = no endpoint and no error", list)
		}
		for _, ep := range eps {
			if why := endpointForm(ep); why != "" {
				t.Errorf("ParseEndpoints(%q) accepted %q: %s", list, ep, why)
			}
		}
		again, err := ParseEndpoints(strings.Join(eps, ","))
		if err != nil || !slices.Equal(again, eps) {
			t.Errorf("ParseEndpoints(%q) = %q, which parses back to %q, %v", list, eps, again, err)
		}
	})
}

// endpointForm checks one endpoint against the documented grammar, independently of
// validateEndpoint, and says what is wrong ("" when nothing is).
func endpointForm(ep string) string {
	hostport := ep
	for _, scheme := range []string{"http://", "https://"} {
		if strings.HasPrefix(ep, scheme) {
			hostport = strings.TrimSuffix(strings.TrimPrefix(ep, scheme), "/")
		}
	}
	if strings.ContainsAny(hostport, "/?#@,") {
		return "holds a path, query, fragment, credentials or comma"
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "not host:port: " + err.Error()
	}
	if host == "" {
		return "empty host"
	}
	for _, r := range host {
		if r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
			return "host holds a space, control or non-ASCII character"
		}
	}
	if strings.HasPrefix(hostport, "[") != strings.Contains(host, ":") {
		return "brackets without an IPv6 address, or an IPv6 address without brackets"
	}
	if strings.Contains(host, "%") {
		if ip := net.ParseIP(host[:strings.Index(host, "%")]); ip == nil || ip.To4() != nil {
			return "a zone on something that is not an IPv6 address"
		}
	}
	if strings.Trim(port, "0123456789") != "" {
		return "port is not decimal digits"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "port out of 1-65535"
	}
	return ""
}
