package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/filename"
	"github.com/parleychat/parley/protocol/fileurl"
)

const fileUsage = `usage: parley file <command> [args]
  send <conversation|@user> <path>   offer a file and upload it (resumes by itself); prints the file id
  resume <file id> <path>            continue an interrupted upload of the same file
  accept <file id> | reject <file id> answer a file offered to you in a private chat
  get <file id> [dir]                download into dir (default: $PARLEY_DOWNLOAD_DIR, $XDG_DOWNLOAD_DIR,
                                     ~/Downloads, else the current folder), resuming a partial download; checks the SHA-256;
                                     never overwrites: a taken name becomes "name (1).ext"
  ls [conversation]                  a conversation's files (a group's shelf), or the offers waiting for you
  thumb <file id> [path]             save a picture's thumbnail (a JPEG, at most 160x160; default <name>.thumb.jpg)
flags: --progress (send, resume, get): print progress with rate and ETA to stderr; --json (ls)`

// jsonFile is a file in file ls --json output: the protocol's FileInfo
// fields under their schema names, times in Unix milliseconds, state and
// answer as the protocol numbers them (parley.FileState and
// parley.FileAnswer keep those numbers).
type jsonFile struct {
	FileID          string `json:"file_id,omitempty"`
	Name            string `json:"name,omitempty"`
	Size            uint64 `json:"size,omitempty"`
	ContentType     string `json:"content_type,omitempty"`
	SHA256          string `json:"sha256,omitempty"`
	SenderID        string `json:"sender_id,omitempty"`
	SenderName      string `json:"sender_name,omitempty"`
	Conversation    string `json:"conversation,omitempty"`
	CreatedAtUnixMs int64  `json:"created_at_unix_ms,omitempty"`
	ExpiresAtUnixMs int64  `json:"expires_at_unix_ms,omitempty"`
	State           int    `json:"state,omitempty"`
	Uploaded        uint64 `json:"uploaded,omitempty"`
	Answer          int    `json:"answer,omitempty"`
	Thumbnail       []byte `json:"thumbnail,omitempty"`
}

func jsonFileOf(f *parley.FileInfo) jsonFile {
	unixMs := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	return jsonFile{FileID: f.ID, Name: f.Name, Size: f.Size, ContentType: f.ContentType, SHA256: f.SHA256,
		SenderID: f.SenderID, SenderName: f.SenderName, Conversation: f.Conversation,
		CreatedAtUnixMs: unixMs(f.CreatedAt), ExpiresAtUnixMs: unixMs(f.ExpiresAt), State: int(f.State),
		Uploaded: f.Uploaded, Answer: int(f.Answer), Thumbnail: f.Thumbnail}
}

func cmdFile(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(a.stdout, fileUsage)
		if len(args) == 0 {
			return usageError{errors.New("missing file command")}
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	fs := a.flags("file "+sub, "")
	progress := fs.Bool("progress", false, "print progress to stderr")
	asJSON := fs.Bool("json", false, "JSON output (ls)")
	switch sub {
	case "send":
		pos, err := parseArgs(fs, rest, 2, 2, "conversation and path")
		if err != nil {
			return err
		}
		return transferSession(ctx, a, func(ctx context.Context, c *parley.Client) error {
			return a.sendFile(ctx, c, pos[0], pos[1], *progress)
		})
	case "resume":
		pos, err := parseArgs(fs, rest, 2, 2, "file id and path")
		if err != nil {
			return err
		}
		return transferSession(ctx, a, func(ctx context.Context, c *parley.Client) error {
			f, err := os.Open(pos[1])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			offer := &parley.FileOffer{File: &parley.FileInfo{ID: pos[0], Size: uint64(st.Size())}, UploadPath: fileurl.Upload(pos[0])}
			return c.Upload(ctx, offer, f, parley.UploadOptions{Progress: a.progress(*progress, "upload")})
		})
	case "accept", "reject":
		pos, err := parseArgs(fs, rest, 1, 1, "file id")
		if err != nil {
			return err
		}
		return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
			if err := c.AnswerFile(ctx, pos[0], sub == "accept"); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%sed %s\n", strings.TrimSuffix(sub, "e"), pos[0])
			return nil
		})
	case "get":
		pos, err := parseArgs(fs, rest, 1, 2, "file id")
		if err != nil {
			return err
		}
		dir := a.downloadDir()
		if len(pos) == 2 {
			dir = pos[1]
		}
		return transferSession(ctx, a, func(ctx context.Context, c *parley.Client) error {
			// Into a part file, then a free name: a file already in dir
			// with the same name is never touched.
			path, _, err := c.DownloadToDir(ctx, pos[0], dir, a.progress(*progress, "download"))
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, path)
			return nil
		})
	case "thumb":
		pos, err := parseArgs(fs, rest, 1, 2, "file id")
		if err != nil {
			return err
		}
		return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
			dl, err := c.DownloadURL(ctx, pos[0])
			if err != nil {
				return err
			}
			f := dl.File
			if len(f.Thumbnail) == 0 {
				if f.State == parley.FileStateUploading {
					return errors.New("no thumbnail yet: the file is still uploading")
				}
				return fmt.Errorf("no thumbnail: %s is not a picture the server could read (%s)", f.Name, f.ContentType)
			}
			path := filename.Sanitize(f.Name) + ".thumb.jpg"
			if len(pos) == 2 {
				path = pos[1]
			}
			if err := os.WriteFile(path, f.Thumbnail, 0o644); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, path)
			return nil
		})
	case "ls":
		pos, err := parseArgs(fs, rest, 0, 1, "")
		if err != nil {
			return err
		}
		conv := ""
		if len(pos) == 1 {
			conv = pos[0]
		}
		return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
			files, err := c.Files(ctx, conv)
			if err != nil {
				return err
			}
			if *asJSON {
				var out []jsonFile
				for _, f := range files {
					out = append(out, jsonFileOf(f))
				}
				return json.NewEncoder(a.stdout).Encode(out)
			}
			for _, f := range files {
				fmt.Fprintf(a.stdout, "%s\t%s\t%d\t%s\t%s\t%s\n", f.ID, f.Name, f.Size, f.SenderName,
					f.CreatedAt.Format(time.RFC3339), f.State)
			}
			return nil
		})
	}
	return usageError{fmt.Errorf("unknown file command %q (parley file help)", sub)}
}

// transferSession runs a file transfer command: dialling and resuming the
// session are bounded by --timeout, as each request fn makes should be
// (a.withTimeout), but the transfer itself only by the signals that end the
// command: it takes as long as the file needs.
func transferSession(ctx context.Context, a *app, fn func(ctx context.Context, c *parley.Client) error) error {
	return withSession(ctx, a, func(_ context.Context, c *parley.Client, _ string, _ *parley.Session) error {
		return fn(ctx, c)
	})
}

// sendFile offers path to a conversation or @user and uploads it.
func (a *app) sendFile(ctx context.Context, c *parley.Client, target, path string, progress bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New(path + " is not a regular file")
	}
	sum, err := parley.FileSHA256(f)
	if err != nil {
		return err
	}
	req := parley.OfferRequest{Name: filepath.Base(path), Size: uint64(st.Size()), SHA256: sum,
		ContentType: mime.TypeByExtension(filepath.Ext(path))}
	if u, ok := strings.CutPrefix(target, "@"); ok {
		req.To = u
	} else {
		req.Conversation = target
	}
	rctx, cancel := a.withTimeout(ctx)
	offer, err := c.OfferFile(rctx, req)
	cancel()
	if err != nil {
		return err
	}
	if err := c.Upload(ctx, offer, f, parley.UploadOptions{Progress: a.progress(progress, "upload")}); err != nil {
		return fmt.Errorf("upload of %s (resume with: parley file resume %s %s): %w", offer.File.ID, offer.File.ID, path, err)
	}
	fmt.Fprintln(a.stdout, offer.File.ID)
	return nil
}

// progress returns a callback printing "what  done/total MiB  rate  ETA"
// to stderr at most every 500 ms (and at the end), or nil.
func (a *app) progress(on bool, what string) func(done, total uint64) {
	if !on {
		return nil
	}
	start, last := time.Now(), time.Time{}
	var first uint64
	started := false
	return func(done, total uint64) {
		if !started {
			first, started = done, true
		}
		now := time.Now()
		if now.Sub(last) < 500*time.Millisecond && done < total {
			return
		}
		last = now
		rate := float64(done-first) / max(now.Sub(start).Seconds(), 0.001)
		eta := "-"
		if rate > 0 && done < total {
			eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(a.stderr, "%s %6.1f/%.1f MiB  %6.1f MiB/s  ETA %s\n", what, float64(done)/(1<<20), float64(total)/(1<<20), rate/(1<<20), eta)
	}
}
