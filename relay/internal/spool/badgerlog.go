package spool

import (
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger adapts Badger's printf-style logger to slog. Badger's info
// chatter is logged at debug level: it is noisy and rarely actionable.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) msg(f string, v ...any) string {
	return strings.TrimSpace(fmt.Sprintf(f, v...))
}
func (b badgerLogger) Errorf(f string, v ...any)   { b.l.Error(b.msg(f, v...)) }
func (b badgerLogger) Warningf(f string, v ...any) { b.l.Warn(b.msg(f, v...)) }
func (b badgerLogger) Infof(f string, v ...any)    { b.l.Debug(b.msg(f, v...)) }
func (b badgerLogger) Debugf(f string, v ...any)   { b.l.Debug(b.msg(f, v...)) }
