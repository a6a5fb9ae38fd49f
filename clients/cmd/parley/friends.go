package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/parleychat/parley/clients/parley"
)

// Friends and blocking. Friendship is a list with online state, not a
// condition for private messages; blocking refuses a user's private
// messages and friend requests.

func cmdFriends(ctx context.Context, a *app, args []string) error {
	fs := a.flags("friends", "")
	asJSON := fs.Bool("json", false, "print a JSON array of {user_id, username, state, online} (state: friend, incoming, outgoing or blocked)")
	if _, err := parseArgs(fs, args, 0, 0, ""); err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		fr, err := c.Friends(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			type jsonFriend struct {
				UserID   string `json:"user_id"`
				Username string `json:"username"`
				State    string `json:"state"`
				Online   bool   `json:"online"`
			}
			out := make([]jsonFriend, 0, len(fr))
			for _, f := range fr {
				out = append(out, jsonFriend{f.UserID, f.Username, f.State.String(), f.Online})
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		// USERNAME STATE [online|offline]: online state is known for
		// friends only.
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for _, f := range fr {
			switch {
			case f.State != parley.FriendFriend:
				fmt.Fprintf(tw, "%s\t%s\n", f.Username, f.State)
			case f.Online:
				fmt.Fprintf(tw, "%s\t%s\tonline\n", f.Username, f.State)
			default:
				fmt.Fprintf(tw, "%s\t%s\toffline\n", f.Username, f.State)
			}
		}
		return tw.Flush()
	})
}

// friendActions are the verbs of `parley friend`.
var friendActions = []string{"add", "accept", "decline", "remove"}

func cmdFriend(ctx context.Context, a *app, args []string) error {
	fs := a.flags("friend", "add|accept|decline|remove <user>")
	pos, err := parseArgs(fs, args, 2, 2, "action and user")
	if err != nil {
		return err
	}
	action := pos[0]
	if !slices.Contains(friendActions, action) {
		return usageError{fmt.Errorf("unknown action %q: want add, accept, decline or remove", action)}
	}
	users, err := usernames(pos[1:])
	if err != nil {
		return err
	}
	user := users[0]
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		switch action {
		case "add":
			state, err := addFriend(ctx, c, user)
			if err != nil {
				return err
			}
			if state == parley.FriendFriend {
				fmt.Fprintf(a.stdout, "you and %s are friends now\n", user)
			} else {
				fmt.Fprintf(a.stdout, "asked %s to be friends\n", user)
			}
		case "accept", "decline":
			if err := c.AnswerFriend(ctx, user, action == "accept"); err != nil {
				return err
			}
			if action == "accept" {
				fmt.Fprintf(a.stdout, "you and %s are friends now\n", user)
			} else {
				fmt.Fprintf(a.stdout, "declined the request of %s\n", user)
			}
		case "remove":
			if err := c.RemoveFriend(ctx, user); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "removed %s from your friends\n", user)
		}
		return nil
	})
}

// addFriend asks user to be friends and returns the relation after it:
// FriendFriend when user had asked first (the request accepted theirs).
func addFriend(ctx context.Context, c *parley.Client, user string) (parley.FriendState, error) {
	if err := c.AddFriend(ctx, user); err != nil {
		return parley.FriendUnknown, err
	}
	fr, err := c.Friends(ctx)
	if err != nil {
		return parley.FriendOutgoing, nil //nolint:nilerr // the request itself succeeded
	}
	for _, f := range fr {
		if f.Username == user {
			return f.State, nil
		}
	}
	return parley.FriendOutgoing, nil
}

func cmdBlock(ctx context.Context, a *app, args []string) error {
	return blockCommand(ctx, a, "block", args, true)
}

func cmdUnblock(ctx context.Context, a *app, args []string) error {
	return blockCommand(ctx, a, "unblock", args, false)
}

func blockCommand(ctx context.Context, a *app, name string, args []string, block bool) error {
	fs := a.flags(name, "<user>")
	pos, err := parseArgs(fs, args, 1, 1, "user")
	if err != nil {
		return err
	}
	users, err := usernames(pos)
	if err != nil {
		return err
	}
	user := users[0]
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		if block {
			if err := c.Block(ctx, user); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "blocked %s\n", user)
			return nil
		}
		if err := c.Unblock(ctx, user); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "unblocked %s\n", user)
		return nil
	})
}
