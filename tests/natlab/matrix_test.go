package natlab

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv/natlab"
)

// site is where one side of a pair sits.
type site struct {
	name string
	kind natlab.Kind
}

// matrixCase is one pair of the matrix: a offers, b accepts.
type matrixCase struct {
	name       string
	a, b       natlab.Kind
	sameNAT    bool // both behind one NAT (a port-restricted cone)
	wantDirect bool
	wantKind   string // the direct pair's kind, "" for any
}

// matrixCases is every pair of NAT kinds (a offering, b accepting; the
// symmetric against port-restricted pair both ways), and two devices
// behind one NAT. A pair goes direct when UDP gets through on
// both sides and at least one NAT maps endpoint-independently (symmetric
// against a port-restricted cone by the birthday technique); two
// symmetric NATs, or a side without UDP, stay relayed (§20.4).
func matrixCases() []matrixCase {
	var cs []matrixCase
	for i, a := range natlab.Kinds {
		for _, b := range natlab.Kinds[i:] {
			direct := a != natlab.NoUDP && b != natlab.NoUDP && !(a == natlab.Symmetric && b == natlab.Symmetric)
			cs = append(cs, matrixCase{name: a.String() + "/" + b.String(), a: a, b: b, wantDirect: direct})
		}
	}
	// The birthday technique with the symmetric side offering too.
	cs = append(cs, matrixCase{name: "symmetric/port-restricted-cone", a: natlab.Symmetric, b: natlab.PortRestrictedCone, wantDirect: true})
	cs = append(cs, matrixCase{name: "same-nat", a: natlab.PortRestrictedCone, b: natlab.PortRestrictedCone,
		sameNAT: true, wantDirect: true, wantKind: "host"})
	return cs
}

// matrixResult is one pair's outcome, written to $NATLAB_MATRIX.
type matrixResult struct {
	Pair         string  `json:"pair"`
	A            string  `json:"a"`
	B            string  `json:"b"`
	Path         string  `json:"path"`
	PairKind     string  `json:"pair_kind,omitempty"`
	Birthday     bool    `json:"birthday,omitempty"`
	TimeToDirect float64 `json:"time_to_direct_ms,omitempty"`
	MessageMS    float64 `json:"message_ms"` // a's first message, sent to acknowledged
}

// TestNATMatrix: two users behind every pair of NAT kinds go direct with
// `parley direct @bob` / `parley direct --accept`, exchange messages both
// ways, and get the path §20.4 promises: direct wherever at least one side
// maps endpoint-independently (and UDP gets through), relayed otherwise.
// With NATLAB_MATRIX set, the results (path, time to direct) are written
// there as JSON.
func TestNATMatrix(t *testing.T) {
	t.Parallel()
	l := natlab.New(t)
	startParleyd(t, l)

	var (
		mu      sync.Mutex
		results []matrixResult
	)
	// The lab is built first, in order; then every pair runs at once (in
	// goroutines: t.Parallel would run only -parallel of them, GOMAXPROCS
	// by default, and the pairs mostly wait).
	type job struct {
		tc     matrixCase
		ha, hb *natlab.Client
	}
	var jobs []job
	for _, tc := range matrixCases() {
		na := l.AddNAT(tc.a)
		nb := na
		if !tc.sameNAT {
			nb = l.AddNAT(tc.b)
		}
		jobs = append(jobs, job{tc, na.AddClient(), nb.AddClient()})
	}
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(j.tc.name, func(t *testing.T) {
				a := newUser(t, j.ha, fmt.Sprintf("alice%d", i))
				b := newUser(t, j.hb, fmt.Sprintf("bob%d", i))
				r := runPair(t, j.tc, a, b)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Pair < results[j].Pair })
	for _, r := range results {
		if r.Path == "direct" {
			t.Logf("%-42s direct (%s%s) after %4.0f ms; message round trip %3.0f ms", r.Pair, r.PairKind,
				map[bool]string{true: ", birthday"}[r.Birthday], r.TimeToDirect, r.MessageMS)
		} else {
			t.Logf("%-42s %s; message round trip %3.0f ms", r.Pair, r.Path, r.MessageMS)
		}
	}
	if path := os.Getenv("NATLAB_MATRIX"); path != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Errorf("writing NATLAB_MATRIX: %v", err)
		}
	}
}

// runPair connects a to b, checks the path and exchanges messages.
func runPair(t *testing.T, tc matrixCase, a, b *user) matrixResult {
	p := connect(t, a, b)
	r := matrixResult{Pair: tc.name, A: tc.a.String(), B: tc.b.String()}
	want := "relayed"
	if tc.wantDirect {
		want = "direct"
	}
	// Both sides reach the expected path: direct when a pair works,
	// relayed 5 s after the acceptance otherwise.
	pa, _ := p.a.wait(t, 0, 15*time.Second, want+" path", isPath(want))
	p.b.wait(t, 0, 15*time.Second, want+" path", isPath(want))
	r.Path = want
	if tc.wantDirect {
		r.PairKind, r.TimeToDirect = pa.str("kind"), pa.num("time_to_direct_ms")
		r.Birthday, _ = pa["birthday"].(bool)
		if tc.wantKind != "" && r.PairKind != tc.wantKind {
			t.Errorf("direct over a %s pair (%s), want %s", r.PairKind, pa.str("pair"), tc.wantKind)
		}
	}
	// Messages both ways, on that path.
	for i := range 3 {
		sent := exchange(t, p.a, p.b, fmt.Sprintf("a->b %d", i), 15*time.Second)
		if i == 0 {
			r.MessageMS = sent.num("ms")
		}
		if got := sent.str("path"); got != want {
			t.Errorf("a's message %d went %s, want %s", i, got, want)
		}
		sent = exchange(t, p.b, p.a, fmt.Sprintf("b->a %d", i), 15*time.Second)
		if got := sent.str("path"); got != want {
			t.Errorf("b's message %d went %s, want %s", i, got, want)
		}
	}
	// Each message arrived once.
	for i := range 3 {
		if n := p.b.count(isMessage(fmt.Sprintf("a->b %d", i))); n != 1 {
			t.Errorf("b got a->b %d %d times", i, n)
		}
		if n := p.a.count(isMessage(fmt.Sprintf("b->a %d", i))); n != 1 {
			t.Errorf("a got b->a %d %d times", i, n)
		}
	}
	// The statistics agree: packets went on the path shown.
	m := p.a.mark()
	p.a.send(t, "/stats")
	st, _ := p.a.wait(t, m, 5*time.Second, "stats", isEvent("stats"))
	if st.str("path") != want {
		t.Errorf("/stats says %s, want %s", st.str("path"), want)
	}
	if tc.wantDirect && st.num("direct_sent") == 0 {
		t.Errorf("direct, yet no packet sent direct: %v", st)
	}
	return r
}
