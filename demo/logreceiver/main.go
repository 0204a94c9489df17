// Command logreceiver is the demo's stand-in for PagerDuty, Slack and e-mail: an Alertmanager
// webhook receiver that prints one line per alert it is sent, naming the receiver the shipped
// routing chose, so the demo shows where a real alert would have gone.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
)

// maxBody bounds a webhook payload; Alertmanager's are a few KiB per group.
const maxBody = 4 << 20

// message is the part of Alertmanager's webhook payload (version 4) the log shows.
type message struct {
	Version  string  `json:"version"`
	Receiver string  `json:"receiver"`
	Status   string  `json:"status"`
	Alerts   []alert `json:"alerts"`
}

type alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
}

func main() {
	app := kingpin.New("logreceiver", "Print the alerts Alertmanager sends to this webhook.")
	listen := app.Flag("web.listen-address", "address to listen on").Default("127.0.0.1:5001").String()
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)
	if _, err := app.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "logreceiver: error: %v\n", err)
		os.Exit(1)
	}
	logger := promslog.New(logCfg)
	if err := run(*listen, logger); err != nil {
		fmt.Fprintf(os.Stderr, "logreceiver: error: %v\n", err)
		os.Exit(1)
	}
}

func run(listen string, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "OK\n")
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		var m message
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&m); err != nil {
			logger.Warn("bad webhook payload", "err", err)
			http.Error(w, "bad payload: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range m.Alerts {
			logger.Info("alert",
				"receiver", m.Receiver,
				"status", a.Status,
				"alertname", a.Labels["alertname"],
				"severity", a.Labels["severity"],
				"cluster", a.Labels["cluster"],
				"member", a.Labels["member"],
				"summary", a.Annotations["summary"],
				"started", a.StartsAt.Format(time.RFC3339),
			)
		}
	})
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("listening for Alertmanager webhooks", "address", listen)
	select {
	case err := <-errc:
		return fmt.Errorf("listening on %s: %w", listen, err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
