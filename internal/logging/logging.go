// Package logging builds roc-proxy's process logger from the log section:
// JSON or console lines on one writer, batched at most log.flush_interval
// late, warnings and errors written through at once.
//
// It owns the encoder and the batching. It never decides what is logged
// (components take a *zap.Logger and name themselves), never samples (ops
// and the security team count on every access-log line) and never writes
// anywhere but the writer it was given.
package logging

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/roc-proxy/roc-proxy/config"
)

// levels are zap's levels of log.level (validated by config).
var levels = map[config.LogLevel]zapcore.Level{
	config.LogDebug: zapcore.DebugLevel, config.LogInfo: zapcore.InfoLevel,
	config.LogWarn: zapcore.WarnLevel, config.LogError: zapcore.ErrorLevel,
}

// New builds the process logger and returns it with the function
// that flushes and stops it. Sampling is off: every access-log line is
// kept, ops and the security team count on them.
//
// With log.flush_interval (default 250 ms) lines are written in batches, at
// most that late, instead of one write(2) per request: 7% of a
// pass-through request's CPU (bench --mode binary). A warning or an error
// flushes at once, with every line before it, so nothing of a problem
// waits; SIGTERM and SIGINT flush too. Only a process killed outright
// (SIGKILL, the OOM killer) loses up to flush_interval of access-log lines;
// the audit log of signed tokens is written durably, whatever this says.
func New(c config.Log, w io.Writer) (*zap.Logger, func(), error) {
	level, ok := levels[c.Level]
	if !ok {
		return nil, nil, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.MillisDurationEncoder
	var enc zapcore.Encoder
	if c.Format == config.LogConsole {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	if c.FlushInterval == nil || *c.FlushInterval <= 0 {
		return zap.New(zapcore.NewCore(enc, out, level), zap.ErrorOutput(out)), func() { _ = out.Sync() }, nil
	}
	buf := &zapcore.BufferedWriteSyncer{WS: writeThrough{out}, Size: 256 << 10, FlushInterval: *c.FlushInterval}
	core := flushOnWarn{zapcore.NewCore(enc, buf, level)}
	return zap.New(core, zap.ErrorOutput(out)), func() { _ = buf.Stop() }, nil
}

// flushOnWarn writes warnings and errors through at once, after every line
// buffered before them.
type flushOnWarn struct{ zapcore.Core }

func (c flushOnWarn) With(fields []zapcore.Field) zapcore.Core {
	return flushOnWarn{c.Core.With(fields)}
}

func (c flushOnWarn) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c flushOnWarn) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if err := c.Core.Write(e, fields); err != nil {
		return err
	}
	if e.Level >= zapcore.WarnLevel {
		return c.Core.Sync()
	}
	return nil
}

// writeThrough is the buffer's destination: its Sync, which flushOnWarn
// calls at every warning, only writes the lines out. An fsync of stderr
// fails under systemd and Kubernetes (a socket, a pipe: EINVAL), and zap
// would report it after every warning as a plain-text line in the JSON
// stream; on a file it would cost a disk flush per warning, under the
// logger's lock, in the middle of a storm of them.
type writeThrough struct{ zapcore.WriteSyncer }

func (writeThrough) Sync() error { return nil }
