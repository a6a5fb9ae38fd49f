package msgsvc

import (
	"errors"
	"strings"
	"testing"

	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		id, uid string
		err     error
		peer    string
	}{
		{"room.public", "ua", nil, ""},
		{"dm.ua.ub", "ua", nil, "ub"},
		{"dm.ua.ub", "ub", nil, "ua"},
		{"dm.ua.ub", "uc", errNotMember, ""},
		{"dm.ub.ua", "ua", errNoConversation, ""}, // ids must be sorted
		{"dm.ua.ua", "ua", errSelf, ""},
		{"dm.ua", "ua", errNoConversation, ""},
		{"dm.ua.ub.uc", "ua", errNoConversation, ""},
		{"dm.ub.uc.ud", "ua", errNotMember, ""},
		{"dm.>.ua", "ua", errNoConversation, ""},
		{"dm.", "ua", errNotMember, ""},
		{"room.other", "ua", errNoConversation, ""},
		{"group.g1", "ua", errNoConversation, ""},
		{"", "ua", errNoConversation, ""},
		{"room.public.x", "ua", errNoConversation, ""},
	} {
		c, err := resolve(tc.id, tc.uid)
		if !errors.Is(err, tc.err) || (err == nil && c.peer != tc.peer) {
			t.Errorf("resolve(%q, %q) = %+v, %v; want peer %q, %v", tc.id, tc.uid, c, err, tc.peer, tc.err)
		}
	}
	if c, err := direct("ub", "ua"); err != nil || c.id != "dm.ua.ub" || c.peer != "ua" {
		t.Errorf("direct = %+v, %v", c, err)
	}
	if _, err := direct("ua", "ua"); !errors.Is(err, errSelf) {
		t.Errorf("direct with oneself: %v", err)
	}
}

func TestCheckText(t *testing.T) {
	code := func(err error) parleyv1.ErrorCode {
		if err == nil {
			return 0
		}
		return errcode.Code(err)
	}
	for _, tc := range []struct {
		name string
		text string
		max  int
		want parleyv1.ErrorCode
	}{
		{"plain", "hi", 10, 0},
		{"multi-line", "a\nb\r\nc", 10, 0},
		{"chinese", "你好世界", 4, 0},
		{"emoji counts as one", "👍🏽", 2, 0}, // thumbs up + skin tone: two code points
		{"empty", "", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"spaces", "   ", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"ideographic space and tabs", "\u3000\t\n", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"over chars", "abcd", 3, parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{"over bytes", strings.Repeat("€", MaxMessageBytes/3+1), MaxMessageBytes, parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{"at bytes", strings.Repeat("a", MaxMessageBytes), MaxMessageBytes, 0},
		{"invalid utf-8", "a\xffb", 10, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		// White space: unicode.IsSpace.
		{"ASCII white space", "\t\n\v\f\r ", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"NEL and no-break space", "\u0085\u00a0", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"Unicode spaces", "\u1680\u2000\u2005\u200a\u202f\u205f\u3000", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"line and paragraph separators", "\u2028\u2029", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		// Invisible: Default_Ignorable_Code_Point.
		{"zero-width space and joiners", "\u200b\u200c\u200d\u2060\ufeff", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"direction marks", "\u200e\u200f\u202a\u202e\u2066\u061c", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"soft hyphen, Mongolian vowel separator", "\u00ad\u180e", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"Hangul fillers", "\u115f\u1160\u3164\uffa0", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"variation selectors", "\ufe0f\U000e0100\u180b", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"tags and combining grapheme joiner", "\U000e0001\U000e0041\u034f", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"spaces and invisibles mixed", " \u200b\n\u3164 ", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		// Visible, although rare or formatting-like.
		{"one letter among invisibles", "\u200ba\u200b", 10, 0},
		{"emoji with variation selector", "\u2764\ufe0f", 10, 0},
		{"braille blank", "\u2800", 10, 0},
		{"Arabic number sign (prepended mark)", "\u0600", 10, 0},
		{"interlinear annotation anchor", "\ufff9", 10, 0},
		{"Egyptian hieroglyph format control", "\U00013430", 10, 0},
		{"ogham space mark is a space", "\u1680", 10, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
	} {
		if got := code(checkText(tc.text, tc.max)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckClientKey(t *testing.T) {
	for k, ok := range map[string]bool{
		"a": true, strings.Repeat("k", 64): true, strings.Repeat("語", 64): true, "Zm9vYmFy-_=": true,
		strings.Repeat("😀", 64): true, "a b": true, "é:ü/#": true, "\u0301": true, // a combining mark is printable
		"": false, strings.Repeat("k", 65): false, strings.Repeat("😀", 65): false,
		"a\nb": false, "a\rb": false, "\x00": false, "a\x7f": false, "a\tb": false, "\u0085": false,
		// The server trims trailing white space from the header: "k " was "k".
		"k ": false, " k": false, " ": false,
		"a\u00a0": false, "a\u2003b": false, "\u200b": false, "a\u200db": false, "\ufeff": false, // other spaces, invisibles
		"\ue000": false, "\U0010fffd": false, // private use
	} {
		if got := checkClientKey(k) == nil; got != ok {
			t.Errorf("checkClientKey(%q) ok=%v, want %v", k, got, ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	off := DefaultConfig()
	off.SendLimit, off.FriendRequestLimit, off.GroupCreateLimit, off.InviteLimit, off.LookupLimit, off.LookupBurst = 0, 0, 0, 0, 0, 0
	off.TypingLimit, off.MaxGroups, off.MaxPendingInvites = 0, 0, 0
	if err := off.validate(); err != nil {
		t.Errorf("every limit off: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"replicas 0":         func(c *Config) { c.StreamReplicas = 0 },
		"replicas 7":         func(c *Config) { c.StreamReplicas = 7 },
		"negative retention": func(c *Config) { c.Retention = -1 },
		"dedup 0":            func(c *Config) { c.DedupWindow = 0 },
		"dedup > retention":  func(c *Config) { c.Retention = c.DedupWindow / 2 },
		"chars 0":            func(c *Config) { c.MaxMessageChars = 0 },
		"chars too many":     func(c *Config) { c.MaxMessageChars = MaxMessageBytes + 1 },
		"workers 0":          func(c *Config) { c.Workers = 0 },
		"lookup timeout 0":   func(c *Config) { c.LookupTimeout = 0 },
		"negative send rate": func(c *Config) { c.SendLimit = -1 },
		"negative cap":       func(c *Config) { c.MaxPendingInvites = -1 },
		"invite limit 99":    func(c *Config) { c.InviteLimit = maxInvitesPerRequest - 1 },
		"lookup burst 99":    func(c *Config) { c.LookupBurst = maxInvitesPerRequest - 1 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
}
