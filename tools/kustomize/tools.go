//go:build tools

// Package tools pins the version of kustomize, which the deploy/kubernetes tests run to build
// every kustomization under deploy/ as `kubectl apply -k` would; tools/build.sh builds it with
// 'go build' inside this directory.
package tools

import (
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
