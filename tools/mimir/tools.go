//go:build tools

// Package tools pins the version of Grafana Mimir that the fleet e2e scenario runs;
// tools/build.sh builds it with 'go build' inside this directory.
package tools

import (
	_ "github.com/grafana/mimir/cmd/mimir"
)
