// Package scrapetimeout turns Prometheus' X-Prometheus-Scrape-Timeout-Seconds header into the
// deadline of one answer. The /metrics handler and the status API apply the same rules, so a
// scrape and an API request made with the same header get the same deadline.
package scrapetimeout

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Header is the request header Prometheus sets to its scrape_timeout, in seconds.
const Header = "X-Prometheus-Scrape-Timeout-Seconds"

// Max caps the header: a larger value is served as Max. Prometheus' scrape_timeout cannot exceed
// its scrape_interval, and an interval above a few minutes leaves too few samples for the rules'
// rate() windows, so a longer header is a mistake or an attack, and honouring it would let one
// request hold a snapshot (and its etcd calls) open for hours.
const Max = 5 * time.Minute

// maxQuoted bounds how much of a rejected header is echoed back in the error.
const maxQuoted = 32

// Parse computes an answer's deadline from the header's value: the header minus offset, or half
// the header when it leaves no room for the offset, never more than Max minus offset. Without the
// header it is fallback. NaN, infinities, zero, negative values and anything that is not a number
// are an error, which callers answer with 400: NaN passes every range comparison, so it must be
// refused by name before any of them.
func Parse(header string, fallback, offset time.Duration) (time.Duration, error) {
	if header == "" {
		return fallback, nil
	}
	secs, err := strconv.ParseFloat(header, 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs <= 0 {
		return 0, invalid(header)
	}
	t := Max
	if secs < Max.Seconds() {
		t = time.Duration(secs * float64(time.Second))
	}
	if t-offset > 0 {
		t -= offset
	} else {
		t /= 2
	}
	if t <= 0 {
		// Below two nanoseconds: no etcd call could finish, so it cannot be what was meant.
		return 0, invalid(header)
	}
	return t, nil
}

func invalid(header string) error {
	if len(header) > maxQuoted {
		header = header[:maxQuoted] + "..."
	}
	return fmt.Errorf("invalid %s %q: want a positive number of seconds", Header, header)
}
