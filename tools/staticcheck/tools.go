//go:build tools

// Package tools pins the version of staticcheck, which `make lint` runs; tools/build.sh builds
// it with 'go build' inside this directory.
package tools

import (
	_ "honnef.co/go/tools/cmd/staticcheck"
)
