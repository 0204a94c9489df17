//go:build tools

// Package tools pins the version of helm, which the deploy/helm tests run (helm lint, helm
// template) on the chart; tools/build.sh builds it with 'go build' inside this directory.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
