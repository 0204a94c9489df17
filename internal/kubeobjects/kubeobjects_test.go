package kubeobjects

import (
	"strings"
	"testing"
)

const service = `apiVersion: v1
kind: Service
metadata:
  name: s
spec:
  ports:
    - name: metrics
      port: 9379
`

func TestDecode(t *testing.T) {
	o, err := Decode([]byte("# a comment-only document\n---\n" + service + "--- # second\n" + strings.Replace(service, "name: s", "name: t", 1) + "---\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Services) != 2 || o.Services[1].Name != "t" || o.Services[0].Spec.Ports[0].Port != 9379 {
		t.Fatalf("decoded %+v", o.Services)
	}
}

// TestDecodeRefuses: what the API server would drop or refuse is an error naming the document.
func TestDecodeRefuses(t *testing.T) {
	for name, c := range map[string]struct{ doc, want string }{
		"unknown field": {strings.Replace(service, "  ports:", "  portz:", 1), `unknown field "portz"`},
		"wrong level":   {service + "ports: []\n", `unknown field "ports"`},
		"wrong type":    {strings.Replace(service, "port: 9379", "port: nine", 1), "Service/s"},
		"unknown kind":  {strings.Replace(service, "kind: Service", "kind: Servise", 1), "a kind this decoder does not know"},
		"no name":       {strings.Replace(service, "  name: s\n", "", 1), "no metadata.name"},
		"duplicate key": {service + "spec: {}\n", "document 1"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
