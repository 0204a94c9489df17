package snapshot

// dropStaleClients closes the clients built with a password that is no longer the one in the
// password file: clientv3 keeps the password per client and re-authenticates with it when its
// token is refused, so only a new client uses a changed password. The next call makes a new one.
// A snapshot running concurrently on a dropped client fails, but after a password change that
// client would be refused anyway. The certificate and CA files need nothing here: every new TLS
// connection reads them (etcdconn.Credentials).
func (t *Taker) dropStaleClients() {
	pw := t.creds.Password()
	t.mu.Lock()
	defer t.mu.Unlock()
	for ep, c := range t.clients {
		if c.Password != pw {
			t.logger.Info("reconnecting with the changed etcd password", "endpoint", ep)
			_ = c.Close()
			delete(t.clients, ep)
		}
	}
}
