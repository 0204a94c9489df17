// Command etcd-monitor exports the state of a whole etcd cluster to Prometheus, benchmarks it,
// and checks it from scripts.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
)

const appName = "etcd-monitor"

func main() {
	os.Exit(run(os.Args[1:]))
}

// run parses args and runs the chosen command, returning the process exit status.
func run(args []string) int {
	app := kingpin.New(appName, "Monitor, benchmark and check etcd clusters.")
	app.Version(version.Print(appName))
	app.HelpFlag.Short('h')
	app.UsageWriter(os.Stdout)
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)

	exporterCmd, runExporter := addExporterCommand(app)
	exporterCmd.Default()
	commands := map[string]func(context.Context, *slog.Logger) error{
		exporterCmd.FullCommand(): runExporter,
	}
	for _, add := range extraCommands {
		cmd, fn := add(app)
		commands[cmd.FullCommand()] = fn
	}

	chosen, err := app.Parse(args)
	if err != nil {
		if pc, _ := app.ParseContext(args); pc != nil && pc.SelectedCommand != nil {
			if handle, ok := usageErrorHandlers[pc.SelectedCommand.FullCommand()]; ok {
				return handle(err)
			}
		}
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", appName, err)
		return 1
	}
	logger := promslog.New(logCfg)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := commands[chosen](ctx, logger); err != nil {
		var ec exitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintf(os.Stderr, "%s: %s\n", appName, msg)
			}
			return ec.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", appName, err)
		return 1
	}
	return 0
}

// extraCommands lets each command register itself from its own file.
var extraCommands []func(*kingpin.Application) (*kingpin.CmdClause, func(context.Context, *slog.Logger) error)

// usageErrorHandlers report a command line error of the command they are keyed by (its full name)
// and return the exit status; without one a command line error is one line on stderr and exit 1.
var usageErrorHandlers = map[string]func(error) int{}

// exitCoder is an error that asks for a specific exit status (check uses 1, 2 and 3).
type exitCoder interface {
	error
	ExitCode() int
}
