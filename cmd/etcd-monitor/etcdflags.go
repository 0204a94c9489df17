package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/etcd-monitor/etcd-monitor/etcdconn"
)

// etcdFlags are the connection flags shared by every command that talks to etcd.
type etcdFlags struct {
	endpoints          string
	caFile             string
	certFile           string
	keyFile            string
	serverName         string
	insecureSkipVerify bool
	username           string
	passwordFile       string
}

func addEtcdFlags(cmd *kingpin.CmdClause) *etcdFlags {
	f := &etcdFlags{}
	cmd.Flag("etcd.endpoints", "Comma-separated etcd client endpoints (host:port, http://host:port or https://host:port).").
		Default("127.0.0.1:2379").StringVar(&f.endpoints)
	cmd.Flag("etcd.tls.ca-file", "PEM file of the CA that signed the etcd server certificates; re-read when it changes.").StringVar(&f.caFile)
	cmd.Flag("etcd.tls.cert-file", "PEM client certificate presented to etcd; re-read with the key when either changes.").StringVar(&f.certFile)
	cmd.Flag("etcd.tls.key-file", "PEM key of the client certificate.").StringVar(&f.keyFile)
	cmd.Flag("etcd.tls.server-name", "Server name expected in the etcd server certificates.").StringVar(&f.serverName)
	cmd.Flag("etcd.tls.insecure-skip-verify", "Do not verify the etcd server certificates (unsafe).").BoolVar(&f.insecureSkipVerify)
	cmd.Flag("etcd.username", "etcd user name, when auth is enabled.").StringVar(&f.username)
	cmd.Flag("etcd.password-file", "File holding the etcd user's password (never given on the command line); re-read when it changes.").StringVar(&f.passwordFile)
	return f
}

// config validates the flags and reads the files they name, so that bad input fails at start-up.
func (f *etcdFlags) config() (etcdconn.Config, error) {
	eps, err := etcdconn.ParseEndpoints(f.endpoints)
	if err != nil {
		return etcdconn.Config{}, err
	}
	c := etcdconn.Config{
		Endpoints:          eps,
		CAFile:             f.caFile,
		CertFile:           f.certFile,
		KeyFile:            f.keyFile,
		ServerName:         f.serverName,
		InsecureSkipVerify: f.insecureSkipVerify,
		Username:           f.username,
		// A path, not the password: the exporter re-reads the file when it changes.
		PasswordFile: f.passwordFile,
	}
	return c, c.Validate()
}
