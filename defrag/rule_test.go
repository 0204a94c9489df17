package defrag

import (
	"math"
	"strings"
	"testing"
)

func TestRuleEvaluate(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		name string
		s    Sizes
		want bool
		why  string
	}{
		{"45% and 100MiB free", Sizes{DBSize: 1000 * MiB, DBSizeInUse: 550 * MiB}, true, "45% free"},
		{"just under 45%", Sizes{DBSize: 1000 * MiB, DBSizeInUse: 551 * MiB}, false, "below 45%"},
		// A small file that is mostly free is not worth a pause: the absolute floor holds it back.
		{"90% free but 90MiB", Sizes{DBSize: 100 * MiB, DBSizeInUse: 10 * MiB}, false, "below 45% or 100 MiB"},
		{"quota 85% used, 100MiB free", Sizes{DBSize: 1700 * MiB, DBSizeInUse: 1600 * MiB, Quota: 2 * gib}, true, "quota 83% used"},
		{"quota 85% used, 99MiB free", Sizes{DBSize: 1700 * MiB, DBSizeInUse: 1601 * MiB, Quota: 2 * gib}, false, "quota 83% used"},
		{"quota exactly 80% is not above", Sizes{DBSize: 800 * MiB, DBSizeInUse: 600 * MiB, Quota: 1000 * MiB}, false, "quota 80% used"},
		{"quota unknown", Sizes{DBSize: 1700 * MiB, DBSizeInUse: 1600 * MiB}, false, "quota unknown"},
		{"empty file", Sizes{}, false, "0% free"},
		{"in use above size (racy answer)", Sizes{DBSize: 10, DBSizeInUse: 20}, false, "0% free"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, why := DefaultRule.Evaluate(c.s)
			if got != c.want || !strings.Contains(why, c.why) {
				t.Errorf("Evaluate(%+v) = %v, %q; want %v and a reason containing %q", c.s, got, why, c.want, c.why)
			}
		})
	}
}

func TestRuleValidate(t *testing.T) {
	if err := DefaultRule.Validate(); err != nil {
		t.Fatalf("default rule: %v", err)
	}
	bad := []Rule{
		{MinFreeRatio: 1.5, QuotaRatio: 0.8},
		{MinFreeRatio: math.NaN(), QuotaRatio: 0.8},
		{MinFreeRatio: 0.5, QuotaRatio: 0},
		{MinFreeRatio: 0.5, QuotaRatio: 0.8, MinFreeBytes: -1},
		{MinFreeRatio: 0.5, QuotaRatio: 0.8, QuotaMinFreeBytes: -1},
	}
	for _, r := range bad {
		err := r.Validate()
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("Validate(%+v) = %v, want a one-line error", r, err)
		}
	}
}
