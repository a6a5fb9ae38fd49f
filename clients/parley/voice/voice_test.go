package voice

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// speech is a speech-like test signal of n frames: a harmonic series on a
// gliding pitch (110-170 Hz), shaped by two formants and a 4 Hz syllable
// envelope with near-silent gaps.
func speech(n int) []int16 {
	pcm := make([]int16, n*FrameSamples)
	phase := 0.0
	for i := range pcm {
		t := float64(i) / SampleRate
		f0 := 140 + 30*math.Sin(2*math.Pi*0.7*t)
		phase += 2 * math.Pi * f0 / SampleRate
		var v float64
		for h := 1; h <= 20; h++ {
			f := f0 * float64(h)
			formants := math.Exp(-math.Pow((f-700)/300, 2)) + 0.6*math.Exp(-math.Pow((f-1800)/400, 2)) + 0.05
			v += formants * math.Sin(float64(h)*phase) / float64(h)
		}
		env := math.Max(0, math.Sin(2*math.Pi*4*t))
		pcm[i] = int16(9000 * env * v)
	}
	return pcm
}

// corr is the normalised cross-correlation of a and b with b delayed by
// lag samples.
func corr(a, b []int16, lag int) float64 {
	var ab, aa, bb float64
	for i := 0; i+lag < len(b) && i < len(a); i++ {
		x, y := float64(a[i]), float64(b[i+lag])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// bestLag finds the codec's delay: the lag up to 20 ms where decoded
// output best matches the input.
func bestLag(in, out []int16) (int, float64) {
	best, bc := 0, -2.0
	for lag := 0; lag < FrameSamples; lag++ {
		if c := corr(in, out, lag); c > bc {
			best, bc = lag, c
		}
	}
	return best, bc
}

func encodeAll(t testing.TB, pcm []int16, o Options) [][]byte {
	t.Helper()
	enc, err := NewOpusEncoder(o)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	buf := make([]byte, MaxPacket)
	for i := 0; i+FrameSamples <= len(pcm); i += FrameSamples {
		n, err := enc.Encode(pcm[i:i+FrameSamples], buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i/FrameSamples, err)
		}
		pkts = append(pkts, bytes.Clone(buf[:n]))
	}
	return pkts
}

// decodeAll decodes pkts, treating those lost[i] as missing: recovered
// from the next packet's FEC when fec, else concealed.
func decodeAll(t *testing.T, pkts [][]byte, lost func(int) bool, fec bool) []int16 {
	t.Helper()
	dec, err := NewOpusDecoder()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int16, len(pkts)*FrameSamples)
	for i, p := range pkts {
		frame := out[i*FrameSamples : (i+1)*FrameSamples]
		switch {
		case lost != nil && lost(i) && fec && i+1 < len(pkts) && !lost(i+1):
			err = dec.DecodeFEC(pkts[i+1], frame)
		case lost != nil && lost(i):
			err = dec.Conceal(frame)
		case len(p) <= 2: // DTX: nothing sent
			err = dec.Conceal(frame)
		default:
			err = dec.Decode(p, frame)
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	return out
}

// TestRoundTrip: speech encoded at 24 kbit/s and decoded comes out with
// the same waveform, delayed by the codec's lookahead.
func TestRoundTrip(t *testing.T) {
	in := speech(150)
	pkts := encodeAll(t, in, Options{})
	var bytesSent int
	for _, p := range pkts {
		bytesSent += len(p)
	}
	out := decodeAll(t, pkts, nil, false)
	lag, c := bestLag(in, out)
	t.Logf("150 frames: %d bytes (%.1f kbit/s), codec delay %d samples (%.1f ms), correlation %.3f",
		bytesSent, float64(bytesSent*8)/3/1000, lag, float64(lag)/48, c)
	if c < 0.8 {
		t.Errorf("decoded speech correlates %.3f with the input, want >= 0.8", c)
	}
	if kbps := float64(bytesSent*8) / 3 / 1000; kbps > 30 {
		t.Errorf("%.1f kbit/s, set for 24", kbps)
	}
}

// TestFECRecoversLoss: with one packet in ten lost, recovering each from
// the next packet's FEC gives back more of the speech than concealment.
func TestFECRecoversLoss(t *testing.T) {
	in := speech(250)
	pkts := encodeAll(t, in, Options{})
	lost := func(i int) bool { return i%10 == 5 }
	lag, _ := bestLag(in, decodeAll(t, pkts, nil, false))
	lostOnly := func(out []int16) float64 {
		var sum float64
		var n int
		for i := range pkts {
			if !lost(i) || i*FrameSamples+lag+FrameSamples > len(out) {
				continue
			}
			a := in[i*FrameSamples : (i+1)*FrameSamples]
			b := out[i*FrameSamples+lag : (i+1)*FrameSamples+lag]
			var e, s float64
			for k := range a {
				d := float64(a[k]) - float64(b[k])
				e += d * d
				s += float64(a[k]) * float64(a[k])
			}
			if s > 0 {
				sum += 10 * math.Log10(s/math.Max(e, 1))
				n++
			}
		}
		return sum / float64(n)
	}
	withFEC, withPLC := lostOnly(decodeAll(t, pkts, lost, true)), lostOnly(decodeAll(t, pkts, lost, false))
	t.Logf("lost frames: SNR %.1f dB recovered by FEC, %.1f dB concealed", withFEC, withPLC)
	if withFEC <= withPLC+1 {
		t.Errorf("FEC (%.1f dB) is no better than concealment (%.1f dB) on the lost frames", withFEC, withPLC)
	}
}

// TestDTX: a second of silence sends (almost) nothing.
func TestDTX(t *testing.T) {
	pcm := append(speech(25), make([]int16, 50*FrameSamples)...)
	pkts := encodeAll(t, pcm, Options{})
	small := 0
	for _, p := range pkts[25:] {
		if len(p) <= 2 {
			small++
		}
	}
	t.Logf("%d of 50 silent frames were DTX (at most 2 bytes)", small)
	if small < 35 {
		t.Errorf("only %d of 50 silent frames were DTX", small)
	}
	if p := encodeAll(t, pcm, Options{NoDTX: true}); len(p[60]) <= 2 {
		t.Errorf("with DTX off a silent frame is %d bytes", len(p[60]))
	}
}

// TestConstantBitrate: with ConstantBitrate every speech packet has the
// same size (24 kbit/s: 60 bytes), so sizes tell nothing of what is said;
// without it they vary.
func TestConstantBitrate(t *testing.T) {
	in := speech(100)
	sizes := func(o Options) map[int]int {
		m := map[int]int{}
		for _, p := range encodeAll(t, in, o) {
			m[len(p)]++
		}
		return m
	}
	if cbr := sizes(Options{ConstantBitrate: true, NoDTX: true}); len(cbr) != 1 || cbr[60] != 100 {
		t.Errorf("constant bitrate at 24 kbit/s: packet sizes %v, want 100 of 60 bytes", cbr)
	}
	if vbr := sizes(Options{NoDTX: true}); len(vbr) < 10 {
		t.Errorf("variable bitrate: only %d packet sizes", len(vbr))
	}
}

// TestBadInput: a packet that is not Opus, and PCM that is not a frame,
// are errors; the decoder keeps the output's pace and goes on decoding.
func TestBadInput(t *testing.T) {
	in := speech(20)
	pkts := encodeAll(t, in, Options{})
	dec, err := NewOpusDecoder()
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, FrameSamples)
	for _, p := range pkts[:10] {
		if err := dec.Decode(p, frame); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range [][]byte{{0xff, 0xff, 0xff}, bytes.Repeat([]byte{0x4b}, 2000), {0x4b | 3}} {
		if err := dec.Decode(bad, frame); err == nil {
			t.Errorf("garbage %x… decoded", bad[:min(len(bad), 4)])
		}
	}
	if err := dec.Decode(pkts[10], make([]int16, 100)); err != ErrFrameSize {
		t.Errorf("a short PCM buffer: %v", err)
	}
	if _, err := (&OpusEncoder{}).Encode(make([]int16, 10), nil); err != ErrFrameSize {
		t.Errorf("encoding a short frame: %v", err)
	}
	for _, p := range pkts[10:] {
		if err := dec.Decode(p, frame); err != nil {
			t.Fatalf("after garbage: %v", err)
		}
	}
}

// TestWAV: what WAVWriter writes ReadWAV reads back; other formats are
// refused with what they are.
func TestWAV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.wav")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	pcm := speech(5)
	w, err := NewWAVWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(pcm[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(pcm[1000:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, _ := os.ReadFile(path)
	got, err := ReadWAV(bytes.NewReader(b))
	if err != nil || !slices.Equal(got, pcm) {
		t.Fatalf("read back %d samples (%v), wrote %d", len(got), err, len(pcm))
	}
	stereo := bytes.Clone(b)
	stereo[22] = 2
	cd := bytes.Clone(b)
	cd[24], cd[25], cd[26] = 0x44, 0xac, 0 // 44100 Hz
	for name, in := range map[string][]byte{
		"stereo": stereo, "44.1 kHz": cd, "cut off": b[:30], "not RIFF": []byte("OggS0000000000000000"), "empty": nil,
	} {
		if _, err := ReadWAV(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: read", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestRecordingPlaysInOpusdec: a recording (with gaps where packets were
// lost) decodes with opusdec from opus-tools, a decoder nobody here wrote,
// to the speech that was sent, with its timing kept.
func TestRecordingPlaysInOpusdec(t *testing.T) {
	opusdec, err := exec.LookPath("opusdec")
	if err != nil {
		t.Fatal("opusdec (Debian package opus-tools) is needed; scripts/deps.sh installs it")
	}
	in := speech(100)
	pkts := encodeAll(t, in, Options{})
	dir := t.TempDir()
	rec, err := os.Create(filepath.Join(dir, "call.opus"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecorder(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pkts {
		if i%20 == 7 {
			err = r.Gap()
		} else {
			err = r.Packet(p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	rec.Close()
	out, err := exec.Command(opusdec, "--quiet", "--rate", "48000", "--no-dither", filepath.Join(dir, "call.opus"), filepath.Join(dir, "heard.wav")).CombinedOutput()
	if err != nil {
		t.Fatalf("opusdec: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "heard.wav"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	heard, err := ReadWAV(f)
	if err != nil {
		t.Fatalf("opusdec's WAV: %v", err)
	}
	// opusdec drops the pre-skip (312 samples), so what it gives is
	// aligned with the input up to a few samples.
	if d := len(heard) - len(in); d < -FrameSamples || d > FrameSamples {
		t.Errorf("opusdec gave %d samples for %d sent", len(heard), len(in))
	}
	lag, c := bestLag(in, heard)
	t.Logf("opusdec: %d samples, lag %d, correlation %.3f", len(heard), lag, c)
	if c < 0.75 {
		t.Errorf("opusdec's output correlates %.3f with what was sent", c)
	}
}

func BenchmarkEncode(b *testing.B) {
	pcm := speech(50)
	enc, err := NewOpusEncoder(Options{})
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, MaxPacket)
	b.ReportAllocs()
	for i := range b.N {
		k := i % 50
		if _, err := enc.Encode(pcm[k*FrameSamples:(k+1)*FrameSamples], out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	pkts := encodeAll(b, speech(50), Options{NoDTX: true})
	dec, err := NewOpusDecoder()
	if err != nil {
		b.Fatal(err)
	}
	frame := make([]int16, FrameSamples)
	b.ReportAllocs()
	for i := range b.N {
		if err := dec.Decode(pkts[i%50], frame); err != nil {
			b.Fatal(err)
		}
	}
}

// chirp is a 200 ms tone sweeping from f0 to f1 Hz, tapered: a whistle.
func chirp(f0, f1 float64) []int16 {
	pcm := make([]int16, 10*FrameSamples)
	T := float64(len(pcm)) / SampleRate
	for i := range pcm {
		t := float64(i) / SampleRate
		w := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(pcm)-1))
		pcm[i] = int16(16000 * w * math.Sin(2*math.Pi*(f0*t+(f1-f0)*t*t/(2*T))))
	}
	return pcm
}

// TestDTXKeepsOnsets: sound that starts after a pause comes through whole
// with DTX on, the packets of the pause not sent: speech, and tones (a
// whistle, music). gopus' own DTX took slow tone sweeps for silence and
// mangled them (correlation 0.3-0.6), which is why the encoder does DTX
// itself.
func TestDTXKeepsOnsets(t *testing.T) {
	const talk, pause = 10, 30 // frames: 200 ms of sound, 600 ms of silence
	words := [][]int16{speech(talk), chirp(400, 1400), chirp(1900, 400), chirp(400, 2400), speech(talk), chirp(1400, 400)}
	var pcm []int16
	for _, word := range words {
		pcm = append(pcm, make([]int16, pause*FrameSamples)...)
		pcm = append(pcm, word...)
	}
	pcm = append(pcm, make([]int16, pause*FrameSamples)...)
	enc, err := NewOpusEncoder(Options{})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewOpusDecoder()
	if err != nil {
		t.Fatal(err)
	}
	// The way a call plays it: packets of silence (DTX) not sent, the
	// others through a Player, one frame every 20 ms; no network delay,
	// so the output lags the input by the player's buffering.
	p := NewPlayer(dec)
	var out []int16
	buf := make([]byte, MaxPacket)
	sent, seq := 0, uint32(0)
	now := time.Unix(0, 0)
	frame := make([]int16, FrameSamples)
	for f := 0; f*FrameSamples < len(pcm); f++ {
		n, err := enc.Encode(pcm[f*FrameSamples:(f+1)*FrameSamples], buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > 2 {
			sent++
			seq++
			p.Push(seq, uint32(f*FrameSamples), append([]byte(nil), buf[:n]...), now)
		}
		if err := p.Frame(now, frame); err != nil {
			t.Fatal(err)
		}
		out = append(out, frame...)
		now = now.Add(20 * time.Millisecond)
	}
	// The output lags by the player's buffering and the codec's delay:
	// found on the first word.
	first := pcm[pause*FrameSamples : (pause+talk)*FrameSamples]
	lag, best := 0, -2.0
	for l := 0; l < 10*FrameSamples; l++ {
		if c := corr(first, out[pause*FrameSamples:], l); c > best {
			lag, best = l, c
		}
	}
	t.Logf("output lags %.1f ms", float64(lag)*1000/SampleRate)
	out = out[lag:]
	frames := len(pcm) / FrameSamples
	t.Logf("%d of %d frames sent", sent, frames)
	if sent > frames/2 {
		t.Errorf("DTX sent %d of %d frames, most of them silence", sent, frames)
	}
	for w := range 6 {
		start := (w+1)*pause*FrameSamples + w*talk*FrameSamples
		_, c := bestLag(pcm[start:start+talk*FrameSamples], out[start:start+talk*FrameSamples+FrameSamples])
		if w > 0 && c < 0.8 { // the first word meets a fresh encoder
			t.Errorf("word %d after a pause: correlation %.2f, want >= 0.8", w, c)
		}
		t.Logf("word %d: correlation %.2f", w, c)
	}
}
