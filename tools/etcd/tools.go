//go:build tools

// Package tools pins the version of the reference binaries built from this module;
// tools/build.sh builds them with 'go build' inside this directory.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
