package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// parseArgs parses a subcommand's flags wherever they appear among its
// arguments (`parley history room.public --limit 10`) and returns the
// positional ones, between min and max of them (max < 0: no limit).
// Everything after "--" is positional, for texts that start with a dash.
func parseArgs(fs *flag.FlagSet, args []string, min, max int, what string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < min:
		return nil, usageError{fmt.Errorf("missing %s", what)}
	case max >= 0 && len(pos) > max:
		return nil, usageError{fmt.Errorf("unexpected argument %q", pos[max])}
	}
	return pos, nil
}

// target is what a chat command names: a conversation id, or @username
// for the private conversation with that user.
type target struct {
	conversation string
	username     string
}

func parseTarget(s string) (target, error) {
	if name, ok := strings.CutPrefix(s, "@"); ok {
		if name == "" {
			return target{}, usageError{errors.New("@ needs a username")}
		}
		return target{username: name}, nil
	}
	if s == "" {
		return target{}, usageError{errors.New("empty conversation")}
	}
	return target{conversation: s}, nil
}

// resolve returns the conversation id, opening the private conversation
// for @username.
func (t target) resolve(ctx context.Context, c *parley.Client) (string, error) {
	if t.username == "" {
		return t.conversation, nil
	}
	cv, err := c.OpenDirect(ctx, t.username)
	if err != nil {
		return "", err
	}
	return cv.ID, nil
}

// sessionArgs runs fn with a resumed session (withSession), for commands
// that need only the client.
func sessionArgs(ctx context.Context, a *app, fn func(ctx context.Context, c *parley.Client) error) error {
	return withSession(ctx, a, func(ctx context.Context, c *parley.Client, _ string, _ *parley.Session) error {
		return fn(ctx, c)
	})
}

// messageText is the text of `parley send`: the arguments joined by
// spaces, or stdin for "-" (one trailing newline dropped, others kept).
func (a *app) messageText(args []string) (string, error) {
	if len(args) == 1 && args[0] == "-" {
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return "", fmt.Errorf("reading the message from stdin: %w", err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		return strings.TrimSuffix(s, "\r"), nil
	}
	return strings.Join(args, " "), nil
}

func cmdSend(ctx context.Context, a *app, args []string) error {
	fs := a.flags("send", "<conversation|@username> <text...|->")
	pos, err := parseArgs(fs, args, 2, -1, "conversation and text")
	if err != nil {
		return err
	}
	to, err := parseTarget(pos[0])
	if err != nil {
		return err
	}
	text, err := a.messageText(pos[1:])
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		var m *parley.Message
		if to.username != "" {
			m, err = c.SendTo(ctx, to.username, text)
		} else {
			m, err = c.Send(ctx, to.conversation, text)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "sent %s %d\n", m.Conversation, m.Seq)
		return nil
	})
}

// jsonMessage is a message in --json output.
type jsonMessage struct {
	Conversation string    `json:"conversation"`
	Seq          uint64    `json:"seq"`
	ID           uint64    `json:"id"`
	SenderID     string    `json:"sender_id"`
	SenderName   string    `json:"sender_name"`
	SentAt       time.Time `json:"sent_at"`
	Text         string    `json:"text"`
	// System: a change of a group (created, invited, joined, ...) written
	// by the server; the sender is who caused it.
	System bool `json:"system,omitempty"`
}

// messageBody is a message after its seq (history) or conversation and
// seq (listen): "SENDER: TEXT", or "* TEXT" for a group's system message,
// whose text already names who did what ("alice invited bob").
func messageBody(m parley.Message) string {
	if m.System {
		return "* " + escapeText(m.Text)
	}
	return m.SenderName + ": " + escapeText(m.Text)
}

// escapeText makes a message one line: backslashes and line breaks are
// escaped, so "\n" in the output always means a newline in the message.
var escapeText = strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace

func cmdHistory(ctx context.Context, a *app, args []string) error {
	fs := a.flags("history", "<conversation|@username>")
	before := fs.Uint64("before", 0, "the page before this seq (0: the newest messages)")
	limit := fs.Int("limit", 50, "messages per page (at most 200)")
	asJSON := fs.Bool("json", false, `print {"messages": [...], "more": bool}`)
	pos, err := parseArgs(fs, args, 1, 1, "conversation")
	if err != nil {
		return err
	}
	if *limit < 1 || *limit > 200 {
		return usageError{errors.New("--limit must be between 1 and 200")}
	}
	from, err := parseTarget(pos[0])
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		conv, err := from.resolve(ctx, c)
		if err != nil {
			return err
		}
		msgs, more, err := c.History(ctx, conv, *before, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			out := struct {
				Messages []jsonMessage `json:"messages"`
				More     bool          `json:"more"`
			}{Messages: []jsonMessage{}, More: more}
			for _, m := range msgs {
				out.Messages = append(out.Messages, jsonMessage{m.Conversation, m.Seq, m.ID, m.SenderID, m.SenderName, m.SentAt.UTC(), m.Text, m.System})
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		for _, m := range msgs {
			fmt.Fprintf(a.stdout, "%d %s %s\n", m.Seq, m.SentAt.Format("2006-01-02 15:04"), messageBody(m))
		}
		if more && len(msgs) > 0 {
			fmt.Fprintf(a.stderr, "older messages: parley history %s --before %d\n", pos[0], msgs[0].Seq)
		}
		return nil
	})
}

func cmdConversations(ctx context.Context, a *app, args []string) error {
	fs := a.flags("conversations", "")
	asJSON := fs.Bool("json", false, "print a JSON array of {id, kind, title, unread, last_seq, acked_seq, peer_id, invited, owner_id}")
	if _, err := parseArgs(fs, args, 0, 0, ""); err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		convs, err := c.Conversations(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			type jsonConv struct {
				ID       string `json:"id"`
				Kind     string `json:"kind"`
				Title    string `json:"title"`
				Unread   uint64 `json:"unread"`
				LastSeq  uint64 `json:"last_seq"`
				AckedSeq uint64 `json:"acked_seq"`
				PeerID   string `json:"peer_id,omitempty"`
				Invited  bool   `json:"invited,omitempty"`
				OwnerID  string `json:"owner_id,omitempty"`
			}
			out := make([]jsonConv, 0, len(convs))
			for _, cv := range convs {
				out = append(out, jsonConv{cv.ID, cv.Kind.String(), cv.Title, cv.Unread(), cv.LastSeq, cv.AckedSeq, cv.PeerID, cv.Invited, cv.OwnerID})
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for _, cv := range convs {
			title := cv.Title
			if cv.Invited {
				title += " (invited)" // join with `parley group join ID`
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", cv.ID, title, cv.Unread())
		}
		return tw.Flush()
	})
}

// cmdListen prints each message as it arrives, one line each:
// "<conversation> <seq> <sender>: <text>" with line breaks escaped (a
// group's system message: "<conversation> <seq> * <text>"). A
// fresh client first prints what the user has not read (private
// conversations) and the room's recent messages, then new ones; across
// reconnects nothing is printed twice or skipped. It runs until
// interrupted (exit 0) or the session ends (exit 1).
func cmdListen(ctx context.Context, a *app, args []string) error {
	fs := a.flags("listen", "")
	ack := fs.Bool("ack", false, "acknowledge each message printed")
	if _, err := parseArgs(fs, args, 0, 0, ""); err != nil {
		return err
	}
	dctx, cancel := a.withTimeout(ctx)
	c, key, _, err := a.openSession(dctx, parley.WithPresenceFeed(false), parley.WithAutoAck(*ack))
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-c.Events():
			if !ok {
				if err := c.Err(); err != nil && !errors.Is(err, context.Canceled) {
					return err
				}
				return nil
			}
			switch ev := ev.(type) {
			case parley.MessageEvent:
				m := ev.Message
				fmt.Fprintf(a.stdout, "%s %d %s\n", m.Conversation, m.Seq, messageBody(m))
			case parley.DisconnectedEvent:
				fmt.Fprintf(a.stderr, "parley listen: disconnected (%s); reconnecting\n", describe(ev.Err))
			case parley.ReconnectedEvent:
				if ev.Session != nil {
					_ = a.store().save(key, ev.Session, savedResumed)
				}
				fmt.Fprintln(a.stderr, "parley listen: reconnected")
			case parley.SessionEndedEvent:
				return ev.Err()
			}
		}
	}
}
