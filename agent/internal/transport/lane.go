package transport

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// laneState is one lane's sending state in one session, shared by its
// sender and its ack reader.
type laneState struct {
	mu       sync.Mutex
	inflight map[uint64]bool
	cursor   uint64    // highest seq sent since the last rewind
	paused   time.Time // no sending before this (SPOOL_FULL)
	wake     chan struct{}
}

func (l *laneState) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// redeliverAfter is how long a spooled batch waits for its receipt before
// it is sent again: redeliver_after, or less after a move to another relay
// so that everything spooled before the move goes out again now.
func (s *session) redeliverAfter(now time.Time) time.Duration {
	ra := s.c.opts.RedeliverAfter
	if !s.resendBefore.IsZero() {
		ra = min(ra, max(now.Sub(s.resendBefore), 0))
	}
	return ra
}

// runLane sends the lane's batches oldest first, at most s.inflight
// unacknowledged at a time. It rewinds to the oldest batch after a
// SPOOL_FULL pause and now and then to pick up spooled batches that were
// not delivered within redeliver_after.
func (s *session) runLane(ctx context.Context, lane agentv1.Priority) error {
	r := s.c.opts.Ring
	ls := &laneState{inflight: map[uint64]bool{}, wake: make(chan struct{}, 1)}
	rewindEvery := min(max(s.c.opts.RedeliverAfter/4, time.Second), time.Minute)
	rewind := time.NewTicker(rewindEvery)
	defer rewind.Stop()
	var laneStream io.Writer
	for {
		changed := r.Changed()
		ls.mu.Lock()
		now := s.c.opts.Clock.Now()
		wait := ls.paused.Sub(now)
		full := len(ls.inflight) >= s.inflight
		cursor := ls.cursor
		ls.mu.Unlock()

		var e ring.Entry
		ok := false
		if wait <= 0 && !full {
			ls.mu.Lock()
			e, ok = r.Next(lane, cursor, s.redeliverAfter(now), func(seq uint64) bool { return ls.inflight[seq] })
			ls.mu.Unlock()
		}
		if !ok {
			var pause *time.Timer
			var pauseC <-chan time.Time
			if wait > 0 {
				pause = time.NewTimer(wait)
				pauseC = pause.C
			}
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			case <-ls.wake:
			case <-pauseC:
			case <-rewind.C:
				ls.mu.Lock()
				ls.cursor = 0
				ls.mu.Unlock()
			}
			if pause != nil {
				pause.Stop()
			}
			continue
		}
		batch, err := r.Read(e.Seq)
		if err != nil {
			s.c.log.Warn("skipping unreadable batch", "seq", e.Seq, "err", err)
			ls.mu.Lock()
			ls.cursor = max(ls.cursor, e.Seq)
			ls.mu.Unlock()
			continue
		}
		frame, err := framing.AppendEventBatch(nil, batch)
		if err != nil {
			s.c.log.Error("dropping batch too large to send", "seq", e.Seq, "err", err)
			_ = r.Reject(e.Seq)
			continue
		}
		if laneStream == nil {
			var st framing.Stream
			st, err = s.conn.OpenStream(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("relay %s: open %s stream: %w", s.addr, lane, fromClose(err))
			}
			laneStream = st
			s.wg.Go(func() {
				if err := s.readAcks(ctx, lane, st, ls); err != nil {
					s.fail(err)
				}
			})
		}
		ls.mu.Lock()
		ls.inflight[e.Seq] = true
		ls.cursor = max(ls.cursor, e.Seq)
		ls.mu.Unlock()
		if _, err := laneStream.Write(frame); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay %s: send %s batch: %w", s.addr, lane, fromClose(err))
		}
	}
}

// readAcks applies the relay's BatchAcks for one lane stream.
func (s *session) readAcks(ctx context.Context, lane agentv1.Priority, stream io.Reader, ls *laneState) error {
	r := s.c.opts.Ring
	rd := framing.NewReader(stream, 0)
	for {
		var f agentv1.Frame
		if err := rd.Next(&f); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay %s: %s stream: %w", s.addr, lane, fromClose(err))
		}
		var ack *agentv1.BatchAck
		switch b := f.Body.(type) {
		case *agentv1.Frame_BatchAck:
			ack = b.BatchAck
		case *agentv1.Frame_Error:
			return &RelayError{Code: b.Error.GetCode(), Message: b.Error.GetMessage()}
		default:
			return fmt.Errorf("relay %s: %s stream: got %T, want BatchAck", s.addr, lane, f.Body)
		}
		seq := ack.GetSeq()
		ls.mu.Lock()
		known := ls.inflight[seq]
		delete(ls.inflight, seq)
		ls.mu.Unlock()
		if !known {
			s.c.log.Debug("ack for a batch not in flight", "seq", seq, "status", ack.GetStatus().String())
			continue
		}
		switch ack.GetStatus() {
		case agentv1.BatchAck_STATUS_SPOOLED, agentv1.BatchAck_STATUS_DUPLICATE:
			if err := r.MarkSpooled(seq); err != nil {
				s.c.log.Warn("mark batch spooled", "seq", seq, "err", err)
			}
			s.c.spoolTook()
		case agentv1.BatchAck_STATUS_SPOOL_FULL:
			retry := time.Duration(ack.GetRetryAfterMs()) * time.Millisecond
			if retry <= 0 {
				retry = time.Second
			}
			ls.mu.Lock()
			ls.paused = s.c.opts.Clock.Now().Add(retry)
			ls.cursor = 0
			ls.mu.Unlock()
			s.c.log.Info("relay spool full, pausing lane", "lane", lane.String(), "seq", seq, "retry_after", retry)
			s.c.spoolFull(s.addr, retry)
		case agentv1.BatchAck_STATUS_REJECTED:
			s.c.log.Error("relay rejected batch, dropping it", "seq", seq, "lane", lane.String(), "reason", ack.GetReason())
			if err := r.Reject(seq); err != nil {
				s.c.log.Warn("drop rejected batch", "seq", seq, "err", err)
			}
		default:
			// Unknown status: keep the batch, it is resent on the next rewind.
			s.c.log.Warn("unknown batch ack status, keeping batch", "seq", seq, "status", int32(ack.GetStatus()))
		}
		ls.signal()
	}
}
