package main

import (
	"fmt"
	"path"
	"strings"

	"github.com/etcd-monitor/etcd-monitor/clusterapi"
)

// telemetryPathChars are the characters a --web.telemetry-path may hold: RFC 3986's path
// characters without percent-encoding, so that the path is one literal ServeMux pattern (no
// method, host or {wildcard}) and goes into the landing page's link as it is.
const telemetryPathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"

// validateTelemetryPath refuses a metrics path the mux would panic on, never match, or that would
// take over the status API, the exporter's /-/ endpoints or the landing page.
func validateTelemetryPath(p string) error {
	bad := func(why string) error { return fmt.Errorf("--web.telemetry-path %q %s", p, why) }
	if !strings.HasPrefix(p, "/") {
		return bad("must start with /")
	}
	if i := strings.IndexFunc(p, func(r rune) bool { return !strings.ContainsRune(telemetryPathChars, r) }); i >= 0 {
		return bad(fmt.Sprintf("holds %q: only letters, digits and -._~!$&'()*+,;=:@/ are allowed", p[i:i+1]))
	}
	// The mux redirects requests for unclean paths to their clean form, so an unclean pattern
	// would never be reached.
	if clean := path.Clean(p); clean != p && clean+"/" != p {
		return bad(fmt.Sprintf("is not a clean path (%s)", clean))
	}
	if p == "/" {
		return bad("is the landing page")
	}
	for reserved, what := range map[string]string{
		"/api": "the status API (" + clusterapi.PathStatus + ", ...)",
		"/-":   clusterapi.PathHealthy + " and " + clusterapi.PathReady,
	} {
		if p == reserved || strings.HasPrefix(p, reserved+"/") {
			return bad(fmt.Sprintf("is under %s/, reserved for %s", reserved, what))
		}
	}
	return nil
}

// recoverPattern turns the panic ServeMux raises for an invalid or conflicting pattern into an
// error in *err: a telemetry path that slipped past validateTelemetryPath must not crash the
// exporter. Deferred by the function that registers the handlers.
func recoverPattern(metricsPath string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("--web.telemetry-path %q cannot be served: %v", metricsPath, r)
	}
}
