// Command render writes the rendered mixin (alerts/ and dashboards/) under a directory,
// normally the repository root: go run ./mixin/cmd/render -out .
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/etcd-monitor/etcd-monitor/mixin"
)

func main() {
	out := flag.String("out", ".", "directory to write alerts/ and dashboards/ under")
	overrides := flag.String("config", "", "jsonnet object merged into the mixin's _config, e.g. \"{ memberDownFor: '10s' }\"")
	flag.Parse()
	if err := run(*out, *overrides); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(out, overrides string) error {
	files, err := mixin.Render(overrides)
	if err != nil {
		return err
	}
	for _, name := range mixin.Names(files) {
		p := filepath.Join(out, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}
