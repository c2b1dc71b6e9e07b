package metrics

import "github.com/prometheus/client_golang/prometheus"

// Volume reports the free and total bytes of the file system holding a
// folder (the audit log's), read with statfs at each scrape, so that ops
// see the audit volume filling before writes fail (signing routes answer
// 503 then).
type Volume struct {
	dir        string
	free, size *prometheus.Desc
	statfs     func(dir string) (free, size uint64, err error)
}

// NewAuditVolume is the collector of roc_proxy_audit_volume_free_bytes and
// roc_proxy_audit_volume_size_bytes for the audit folder dir. A folder
// that cannot be read gives no sample (the audit failure metrics say why
// writes fail).
func NewAuditVolume(dir string) *Volume {
	return &Volume{
		dir: dir, statfs: statfs,
		free: prometheus.NewDesc(namespace+"_audit_volume_free_bytes",
			"Bytes available to roc-proxy on the file system holding audit.dir, measured at scrape time.", nil, nil),
		size: prometheus.NewDesc(namespace+"_audit_volume_size_bytes",
			"Size in bytes of the file system holding audit.dir.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (v *Volume) Describe(ch chan<- *prometheus.Desc) {
	ch <- v.free
	ch <- v.size
}

// Collect implements prometheus.Collector.
func (v *Volume) Collect(ch chan<- prometheus.Metric) {
	free, size, err := v.statfs(v.dir)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(v.free, prometheus.GaugeValue, float64(free))
	ch <- prometheus.MustNewConstMetric(v.size, prometheus.GaugeValue, float64(size))
}
