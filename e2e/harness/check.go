package harness

import (
	"fmt"
	"sort"
	"strings"
)

// ExactlyOnce compares the lines written with how often each message
// arrived, returning an error that names the first few lost and doubled
// lines, or nil when every line arrived exactly once.
func ExactlyOnce(written []string, got map[string]int) error {
	var lost, doubled []string
	for _, l := range written {
		switch n := got[l]; {
		case n == 0:
			lost = append(lost, l)
		case n > 1:
			doubled = append(doubled, fmt.Sprintf("%s (x%d)", l, n))
		}
	}
	if len(lost) == 0 && len(doubled) == 0 {
		return nil
	}
	sort.Strings(lost)
	return fmt.Errorf("%d of %d lines lost %s; %d doubled %s",
		len(lost), len(written), firstFew(lost), len(doubled), firstFew(doubled))
}

// Delivered counts how many of the written lines arrived at least once.
func Delivered(written []string, got map[string]int) int {
	n := 0
	for _, l := range written {
		if got[l] > 0 {
			n++
		}
	}
	return n
}

func firstFew(s []string) string {
	if len(s) > 5 {
		return "[" + strings.Join(s[:5], ", ") + ", ...]"
	}
	return "[" + strings.Join(s, ", ") + "]"
}
