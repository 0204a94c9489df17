// Package mixin renders the etcd-monitor jsonnet mixin (alerts, recording rules, Alertmanager
// routing and Grafana dashboards) with go-jsonnet into the files committed under alerts/ and
// dashboards/.
package mixin

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/google/go-jsonnet"
	"gopkg.in/yaml.v3"
)

//go:embed *.libsonnet render.jsonnet lib/*.libsonnet dashboards/*.libsonnet
var sources embed.FS

// header starts every rendered YAML file.
const header = "# Generated from mixin/ by `make mixin` (go run ./mixin/cmd/render -out .); do not edit.\n"

// Render evaluates the mixin and returns each generated file's content keyed by its path
// relative to the repository root. overrides is a jsonnet object merged into _config (for example
// `{ memberDownFor: '10s' }`); the empty string means the shipped defaults.
func Render(overrides string) (map[string][]byte, error) {
	if strings.TrimSpace(overrides) == "" {
		overrides = "{}"
	}
	vm := jsonnet.MakeVM()
	vm.Importer(&embedImporter{cache: map[string]jsonnet.Contents{}})
	vm.ExtCode("overrides", overrides)
	main, err := sources.ReadFile("render.jsonnet")
	if err != nil {
		return nil, err
	}
	out, err := vm.EvaluateAnonymousSnippet("render.jsonnet", string(main))
	if err != nil {
		return nil, fmt.Errorf("evaluating mixin: %w", err)
	}
	var files map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &files); err != nil {
		return nil, fmt.Errorf("decoding mixin output: %w", err)
	}
	rendered := make(map[string][]byte, len(files))
	for name, raw := range files {
		var b []byte
		switch path.Ext(name) {
		case ".json":
			b, err = indentJSON(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		case ".yml", ".yaml":
			b, err = toYAML(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		default:
			return nil, fmt.Errorf("%s: unknown file type", name)
		}
		rendered[name] = b
	}
	return rendered, nil
}

// Names returns the rendered file names, sorted.
func Names(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// indentJSON re-encodes jsonnet's output so that numbers take their shortest form (jsonnet
// writes 0.65 as 0.65000000000000002); keys stay sorted, as jsonnet sorts them.
func indentJSON(raw []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// toYAML turns jsonnet's JSON (keys sorted) into block-style YAML; multi-line strings such as
// rule expressions become literal blocks so they read as written.
func toYAML(raw []byte) ([]byte, error) {
	var node yaml.Node
	if err := yaml.Unmarshal(raw, &node); err != nil {
		return nil, err
	}
	restyle(&node)
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func restyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		if strings.Contains(n.Value, "\n") {
			n.Style = yaml.LiteralStyle
		}
	}
	for _, c := range n.Content {
		restyle(c)
	}
}

// embedImporter resolves imports against the embedded mixin sources. go-jsonnet requires the
// same Contents instance each time a path is imported, hence the cache.
type embedImporter struct {
	cache map[string]jsonnet.Contents
}

func (im *embedImporter) Import(importedFrom, importedPath string) (jsonnet.Contents, string, error) {
	p := path.Clean(path.Join(path.Dir(importedFrom), importedPath))
	if c, ok := im.cache[p]; ok {
		return c, p, nil
	}
	b, err := sources.ReadFile(p)
	if err != nil {
		return jsonnet.Contents{}, "", fmt.Errorf("import %q from %q: %w", importedPath, importedFrom, err)
	}
	c := jsonnet.MakeContents(string(b))
	im.cache[p] = c
	return c, p, nil
}
