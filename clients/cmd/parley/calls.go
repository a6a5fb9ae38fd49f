package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/voice"
)

// Voice calls from the command line, for scripts and tests: audio comes
// from and goes to WAV files (16-bit, 48 kHz, mono), streamed in real
// time.
//
//	parley call @bob --in voice.wav --out heard.wav [--duration 10s] [--record call.ogg]
//	parley answer [--in x.wav] [--out y.wav] [--wait 60s] [--duration D]
//	parley reject [call-id] [--wait 60s]

// callFlags are the audio flags call and answer share.
type callFlags struct {
	in, out, record string
	duration        time.Duration
	frames          bool
}

func (f *callFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.in, "in", "", "WAV file to say (16-bit PCM, 48 kHz, mono; convert with: sox in.wav -r 48000 -c 1 -b 16 out.wav); default: silence")
	fs.StringVar(&f.out, "out", "", "WAV file to write what is heard to (from the answer on)")
	fs.StringVar(&f.record, "record", "", "Ogg Opus file to record the conversation (both sides) to")
	fs.DurationVar(&f.duration, "duration", 0, "hang up this long after the answer (default: --in's length + 1s, or when the other side hangs up)")
	fs.BoolVar(&f.frames, "frames", false, "carry the audio on the connection, not UDP")
}

// callAudio is the audio of one call: the WAV to say, what is heard, the
// recording. Nothing is sent or kept before start (the answer).
type callAudio struct {
	say     []int16
	out     *os.File
	wav     *voice.WAVWriter
	recFile *os.File
	rec     *voice.Recorder
	recEnc  *voice.OpusEncoder

	mu      sync.Mutex // guards the fields below (the call's media loop and the command)
	started bool
	src     *voice.SamplesSource
	sent    []int16 // the frame said this period, mixed into the recording
	err     error   // the first write error
	closed  bool
}

// openCallAudio reads --in and creates --out and --record; close them with
// close.
func openCallAudio(f callFlags) (_ *callAudio, err error) {
	ca := &callAudio{sent: make([]int16, voice.FrameSamples)}
	defer func() {
		if err != nil {
			ca.close()
		}
	}()
	if f.in != "" {
		r, err := os.Open(f.in)
		if err != nil {
			return nil, err
		}
		ca.say, err = voice.ReadWAV(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("--in %s: %w", f.in, err)
		}
	}
	if f.out != "" {
		if ca.out, err = os.Create(f.out); err != nil {
			return nil, err
		}
		if ca.wav, err = voice.NewWAVWriter(ca.out); err != nil {
			return nil, err
		}
	}
	if f.record != "" {
		if ca.recFile, err = os.Create(f.record); err != nil {
			return nil, err
		}
		if ca.rec, err = voice.NewRecorder(ca.recFile); err != nil {
			return nil, err
		}
		// No DTX in a file: every frame coded, so any player decodes it
		// without concealing (after a concealed pause a decoder that does
		// not start anew garbles the next tones: 0.35 correlation through
		// opusdec, against 0.99).
		if ca.recEnc, err = voice.NewOpusEncoder(voice.Options{Bitrate: 32000, NoDTX: true}); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// start begins saying --in and keeping what is heard.
func (ca *callAudio) start() {
	ca.mu.Lock()
	ca.started = true
	ca.src = voice.NewSamplesSource(ca.say)
	ca.mu.Unlock()
}

// length is how long --in lasts.
func (ca *callAudio) length() time.Duration {
	return time.Duration(len(ca.say)) * time.Second / voice.SampleRate
}

// ReadFrame implements voice.PCMSource: silence before the answer and
// after the file.
func (ca *callAudio) ReadFrame(pcm []int16) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	clear(pcm)
	if ca.started && ca.src != nil {
		if err := ca.src.ReadFrame(pcm); errors.Is(err, io.EOF) {
			ca.src = nil
		}
	}
	copy(ca.sent, pcm)
	return nil
}

// WriteFrame implements voice.PCMSink.
func (ca *callAudio) WriteFrame(pcm []int16) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if !ca.started || ca.closed || ca.err != nil {
		return nil
	}
	if ca.wav != nil {
		ca.err = ca.wav.Write(pcm)
	}
	if ca.rec != nil && ca.err == nil {
		acc := make([]int32, voice.FrameSamples)
		voice.MixAdd(acc, pcm)
		voice.MixAdd(acc, ca.sent)
		both := make([]int16, voice.FrameSamples)
		voice.Clip(both, acc)
		pkt := make([]byte, voice.MaxPacket)
		n, err := ca.recEnc.Encode(both, pkt)
		switch {
		case err != nil:
			ca.err = err
		case n <= 2:
			ca.err = ca.rec.Gap() // a DTX frame: keep the timing
		default:
			ca.err = ca.rec.Packet(pkt[:n])
		}
	}
	return ca.err
}

// close finishes the files (after the call's session is over).
func (ca *callAudio) close() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.closed {
		return nil
	}
	ca.closed = true
	errs := []error{ca.err}
	if ca.wav != nil {
		errs = append(errs, ca.wav.Close())
	}
	if ca.out != nil {
		errs = append(errs, ca.out.Close())
	}
	if ca.rec != nil {
		errs = append(errs, ca.rec.Close())
	}
	if ca.recFile != nil {
		errs = append(errs, ca.recFile.Close())
	}
	return errors.Join(errs...)
}

// openCallClient opens the stored session with reconnects on: a call
// rejoins after a network break.
func openCallClient(ctx context.Context, a *app) (*parley.Client, error) {
	dctx, cancel := a.withTimeout(ctx)
	defer cancel()
	c, _, _, err := a.openSession(dctx, parley.WithPresenceFeed(false))
	return c, err
}

func cmdCall(ctx context.Context, a *app, args []string) error {
	fs := a.flags("call", "<@user|conversation>")
	var cf callFlags
	cf.register(fs)
	ring := fs.Duration("ring", 60*time.Second, "how long to wait for an answer")
	pos, err := parseArgs(fs, args, 1, 1, "whom to call (@user or a conversation id)")
	if err != nil {
		return err
	}
	tgt, err := parseTarget(pos[0])
	if err != nil {
		return err
	}
	if cf.duration < 0 || *ring <= 0 {
		return usageError{errors.New("--duration and --ring must be positive")}
	}
	audio, err := openCallAudio(cf)
	if err != nil {
		return err
	}
	defer audio.close()
	c, err := openCallClient(ctx, a)
	if err != nil {
		return err
	}
	defer c.Close()
	go drain(c)

	opts := parley.CallOptions{Input: audio, Output: audio, ForceFrames: cf.frames}
	pctx, cancel := a.withTimeout(ctx)
	var s *parley.CallSession
	if tgt.username != "" {
		s, err = c.PlaceCallTo(pctx, tgt.username, opts)
	} else {
		s, err = c.PlaceCall(pctx, tgt.conversation, opts)
	}
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "calling %s (call %s)...\n", pos[0], s.ID())
	wctx, cancel := context.WithTimeout(ctx, *ring)
	err = s.WaitActive(wctx)
	cancel()
	if err != nil {
		hangup(a, s)
		if errors.Is(err, parley.ErrCallEnded) {
			return fmt.Errorf("no call: %s", s.Call().EndReason)
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("no answer within %v", *ring)
		}
		return err
	}
	return talk(ctx, a, s, audio, cf)
}

func cmdAnswer(ctx context.Context, a *app, args []string) error {
	fs := a.flags("answer", "")
	var cf callFlags
	cf.register(fs)
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for a call to ring")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if cf.duration < 0 || *wait <= 0 {
		return usageError{errors.New("--duration and --wait must be positive")}
	}
	audio, err := openCallAudio(cf)
	if err != nil {
		return err
	}
	defer audio.close()
	c, err := openCallClient(ctx, a)
	if err != nil {
		return err
	}
	defer c.Close()
	call, err := awaitRinging(ctx, a, c, *wait)
	if err != nil {
		return err
	}
	go drain(c)
	jctx, cancel := a.withTimeout(ctx)
	s, err := c.JoinCall(jctx, call.ID, parley.CallOptions{Input: audio, Output: audio, ForceFrames: cf.frames})
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "answered %s's call %s\n", call.CallerName, call.ID)
	return talk(ctx, a, s, audio, cf)
}

func cmdReject(ctx context.Context, a *app, args []string) error {
	fs := a.flags("reject", "[call-id]")
	wait := fs.Duration("wait", 60*time.Second, "how long to wait for a call to ring (without a call id)")
	pos, err := parseArgs(fs, args, 0, 1, "")
	if err != nil {
		return err
	}
	if *wait <= 0 {
		return usageError{errors.New("--wait must be positive")}
	}
	c, err := openCallClient(ctx, a)
	if err != nil {
		return err
	}
	defer c.Close()
	id := ""
	if len(pos) == 1 {
		id = pos[0]
	} else {
		call, err := awaitRinging(ctx, a, c, *wait)
		if err != nil {
			return err
		}
		id = call.ID
	}
	rctx, cancel := a.withTimeout(ctx)
	defer cancel()
	if err := c.RejectCall(rctx, id); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "rejected %s\n", id)
	return nil
}

// awaitRinging waits for a CallRingingEvent. (The protocol has no request
// listing the calls ringing now, so a call must ring after this started.)
func awaitRinging(ctx context.Context, a *app, c *parley.Client, wait time.Duration) (parley.Call, error) {
	fmt.Fprintln(a.stderr, "waiting for a call...")
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return parley.Call{}, ctx.Err()
		case <-timer.C:
			return parley.Call{}, fmt.Errorf("no call rang within %v", wait)
		case ev, ok := <-c.Events():
			if !ok {
				return parley.Call{}, fmt.Errorf("connection ended: %w", c.Err())
			}
			if r, ok := ev.(parley.CallRingingEvent); ok {
				return r.Call, nil
			}
		}
	}
}

// drain reads the client's events (so none pile up) until it ends.
func drain(c *parley.Client) {
	for range c.Events() {
	}
}

// talk runs an answered call: --in said from now, until --duration,
// the end of --in plus a second, or the other side hanging up; then it
// hangs up and prints the outcome and the media statistics.
func talk(ctx context.Context, a *app, s *parley.CallSession, audio *callAudio, cf callFlags) error {
	audio.start()
	answered := time.Now()
	var end <-chan time.Time
	switch {
	case cf.duration > 0:
		end = time.After(cf.duration)
	case len(audio.say) > 0:
		end = time.After(audio.length() + time.Second)
	}
	var outcome string
	select {
	case <-end:
		outcome = "hung up"
	case <-ctx.Done():
		outcome = "hung up (interrupted)"
	case <-s.Done():
		outcome = "the other side hung up"
		if err := s.Err(); err != nil {
			outcome = "call lost: " + describe(err)
		}
	}
	elapsed := time.Since(answered)
	hangup(a, s)
	st := s.Stats()
	if err := audio.close(); err != nil {
		return fmt.Errorf("writing the audio: %w", err)
	}
	fmt.Fprintf(a.stdout, "call %s: %s after %v (%s)\n", s.ID(), outcome, elapsed.Round(100*time.Millisecond), s.Call().EndReason)
	route := "relayed"
	if st.DirectSent+st.DirectReceived > 0 {
		route = fmt.Sprintf("direct for %d sent and %d received", st.DirectSent, st.DirectReceived)
	}
	fmt.Fprintf(a.stdout, "media over %s (%s): sent %d audio packets, received %d, lost %d, late %d, jitter %.1f ms, rtt %.1f ms\n",
		st.Transport, route, st.AudioSent, st.PacketsReceived, st.Lost, st.Late, ms(st.Jitter), ms(st.RTT))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// hangup leaves the call, bounded by a short timeout of its own (the
// command's context may be over).
func hangup(a *app, s *parley.CallSession) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Hangup(ctx); err != nil {
		fmt.Fprintf(a.stderr, "parley: hanging up: %s\n", describe(err))
	}
}
