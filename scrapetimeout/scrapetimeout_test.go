package scrapetimeout

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	fallback = 10 * time.Second
	offset   = 500 * time.Millisecond
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", fallback},
		{"10", 9500 * time.Millisecond},
		{"1.5", time.Second},
		{"0.4", 200 * time.Millisecond}, // no room for the offset: half
		{"0.5", 250 * time.Millisecond},
		{"300", Max - offset},
		{"301", Max - offset},
		{"86400", Max - offset},
		{"1e300", Max - offset},
	} {
		got, err := Parse(tc.header, fallback, offset)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.header, got, err, tc.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, h := range []string{"NaN", "nan", "-NaN", "Inf", "+Inf", "-Inf", "infinity", "0", "-0", "-1", "1e-300", "abc", " 10", "10s", strings.Repeat("9", 400) + "x"} {
		d, err := Parse(h, fallback, offset)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", h, d)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || len(msg) > 200 || !strings.Contains(msg, Header) {
			t.Errorf("Parse(%q) error %q: want one short line naming the header", h, msg)
		}
	}
}

// FuzzParse checks the parser's promise for any header: an accepted value is a positive deadline
// no longer than Max, and no longer than the header itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "10", "0.5", "1e-9", "2e-9", "NaN", "-Inf", "+Inf", "0x1p-2", "1_0", "300.0001", "1e308", "-0", "4.9e-324"} {
		f.Add(s, int64(offset))
	}
	f.Add("0.0000000015", int64(0))
	f.Add("10", int64(time.Hour))
	f.Fuzz(func(t *testing.T, header string, off int64) {
		if off < 0 {
			off = -off
		}
		o := time.Duration(off)
		if o < 0 { // math.MinInt64 stays negative
			o = 0
		}
		d, err := Parse(header, fallback, o)
		if err != nil {
			if header == "" {
				t.Fatalf("empty header refused: %v", err)
			}
			return
		}
		if header == "" {
			if d != fallback {
				t.Fatalf("empty header: %v, want the fallback %v", d, fallback)
			}
			return
		}
		if d <= 0 || d > Max {
			t.Fatalf("Parse(%q, offset %v) = %v: outside (0, %v]", header, o, d, Max)
		}
		if secs, _ := strconv.ParseFloat(header, 64); d.Seconds() > secs {
			t.Fatalf("Parse(%q, offset %v) = %v: longer than the header", header, o, d)
		}
	})
}
