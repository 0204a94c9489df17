// Package demo holds the configuration shared by `make demo` (scripts/demo.sh) and
// docker-compose.yml; see docs/demo.md. It has no code: its test loads docker-compose.yml with
// compose-go and checks that the compose stack and the local demo agree.
package demo
