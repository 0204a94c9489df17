package collector

import (
	"strings"
	"unicode/utf8"
)

// maxLabelValue bounds a label value taken from etcd, in bytes. Member names and URLs are
// whatever an operator (or an attacker with write access to the membership) typed; a megabyte
// name would otherwise be copied into every series of the member, and a Prometheus with
// label_value_length_limit set would reject the whole scrape over it.
const maxLabelValue = 512

// ellipsis marks a value cut at maxLabelValue.
const ellipsis = "…"

// labelValue makes a string from etcd usable as a label value: Prometheus refuses invalid UTF-8
// (client_golang panics in MustNewConstMetric, errors in NewConstMetric), so each invalid byte
// sequence becomes U+FFFD, and the value is cut at a rune boundary to maxLabelValue bytes.
func labelValue(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= maxLabelValue {
		return s
	}
	cut := maxLabelValue - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
