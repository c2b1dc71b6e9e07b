package config

import "net"

// validateAudit checks audit; it is required by the routes that sign.
func (c *Config) validateAudit(p *problems) {
	a := &c.Audit
	a.CheckpointKey.validate(p, "audit.checkpoint_key")

	signs := false
	for _, r := range c.Routes {
		signs = signs || r != nil && r.Token != nil
	}
	if signs && a.Dir == "" {
		p.add("audit.dir", "required: routes sign tokens, and every token is recorded before it leaves")
	}
	oneOf(p, "audit.patient_id", a.PatientID, patientIDModes)
	if a.PatientIDKey != "" && a.PatientID != PatientIDHash {
		p.add("audit.patient_id_key", "keys the patient's INS hash: it needs patient_id: hash (patient_id is %q)", a.PatientID)
	}
	if a.StoreAssertion && a.PatientID != PatientIDKeep {
		p.add("audit.store_assertion", "a stored assertion holds the patient's INS in clear (DMP tokens), which audit.patient_id %q keeps out of the records (and of what is shipped): set patient_id: keep to store assertions", a.PatientID)
	}
	if a.ChainID != "" && !chainRE.MatchString(a.ChainID) {
		p.add("audit.chain_id", "%q must be letters, digits, . _ -", a.ChainID)
	}
	positive(p, "audit.max_file_bytes", a.MaxFileBytes)
	positiveDur(p, "audit.max_file_age", a.MaxFileAge)
	positive(p, "audit.checkpoint_every", int64(a.CheckpointEvery))
	positiveDur(p, "audit.checkpoint_interval", a.CheckpointInterval)
	a.Ship.Syslog.validate(p, "audit.ship.syslog")
	if (a.Ship.Stdout || a.Ship.Syslog != nil) && a.Dir == "" {
		p.add("audit.ship", "needs audit.dir: records are shipped from the durable files")
	}
}

// validate checks a syslog collector; nil is no collector.
func (s *AuditSyslog) validate(p *problems, path string) {
	if s == nil {
		return
	}
	if host, port, err := net.SplitHostPort(s.Address); err != nil || host == "" || port == "" {
		p.add(path+".address", "%q is not host:port", s.Address)
	}
	if oneOf(p, path+".transport", s.Transport, syslogTransports) {
		switch s.Transport {
		case SyslogTLS:
			if s.CA == "" {
				p.add(path+".ca", "required with transport tls: the authorities of the collector's certificate")
			}
		case SyslogTCP:
			if s.CA != "" || s.Cert != "" || s.Key != "" || s.ServerName != "" {
				p.add(path+".transport", "tcp takes no ca, cert, key or server_name: use tls")
			}
		}
	}
	if (s.Cert == "") != (s.Key == "") {
		p.add(path+".cert", "cert and key go together")
	}
	if s.Facility.Code() < 0 {
		p.add(path+".facility", "%q is not a syslog facility (authpriv, local0 ... local7, ...)", s.Facility)
	}
	for _, f := range []struct{ name, v string }{{"hostname", s.Hostname}, {"app_name", s.AppName}} {
		for _, r := range f.v {
			if r < 33 || r > 126 {
				p.add(path+"."+f.name, "%q must be printable ASCII without spaces", f.v)
				break
			}
		}
	}
	if len(s.AppName) > 48 {
		p.add(path+".app_name", "%q is longer than 48 characters", s.AppName)
	}
	if len(s.Hostname) > 255 {
		p.add(path+".hostname", "longer than 255 characters")
	}
	positiveDur(p, path+".timeout", s.Timeout)
}
