package helm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestValuesDocumented: every key of values.yaml has a row in docs/kubernetes.md's values table
// (a map is documented by its own row or by rows for each of its keys), and every row names a key
// that exists, so the table cannot drift from the chart.
func TestValuesDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := bytes.Cut(doc, []byte("\n## Values\n"))
	if !ok {
		t.Fatal("docs/kubernetes.md has no ## Values section")
	}
	documented := map[string]bool{}
	defaults := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-zA-Z0-9.]+)` \\| ([^|]*) \\|").FindAllSubmatch(section, -1) {
		documented[string(m[1])] = false
		defaults[string(m[1])] = string(m[2])
	}
	if len(documented) == 0 {
		t.Fatal("docs/kubernetes.md has no values table")
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := prefix + k
			if _, ok := documented[p]; ok {
				documented[p] = true
				// A scalar's default is shown as it is (an empty string as "").
				var want string
				switch v := v.(type) {
				case string:
					want = "`" + v + "`"
					if v == "" {
						want = "`\"\"`"
					}
				case bool, float64:
					want = "`" + strings.TrimSuffix(fmt.Sprint(v), ".0") + "`"
				default:
					continue
				}
				if defaults[p] != want {
					t.Errorf("docs/kubernetes.md: %s defaults to %s, values.yaml says %s", p, defaults[p], want)
				}
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(p+".", sub)
				continue
			}
			t.Errorf("value %s is not in docs/kubernetes.md's values table", p)
		}
	}
	walk("", values)
	var gone []string
	for k, seen := range documented {
		if !seen {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)
	for _, k := range gone {
		t.Errorf("docs/kubernetes.md documents %s, which values.yaml does not have", k)
	}
}
