package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/parleychat/parley/clients/parley"
)

// groupCommands are the subcommands of `parley group`. A group is named by
// its conversation id ("group.…", as `group create` and `conversations`
// print it); send and history take the same id.
func groupCommands() []command {
	return []command{
		{"create", "create <name> [user...]: create a group, invite users, print its id", groupCreate},
		{"invite", "invite <group> <user...>: invite users (members may invite)", groupInvite},
		{"join", "join <group>: accept an invitation", groupJoin},
		{"leave", "leave <group>: leave a group or decline an invitation", groupLeave},
		{"remove", "remove <group> <user>: remove a member or withdraw an invitation (owner)", groupRemove},
		{"rename", "rename <group> <name>: rename a group (owner)", groupRename},
		{"members", "members <group> [--json]: list members, then invitations", groupMembers},
	}
}

func groupUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: parley group <command> [flags] [args]\n\ncommands:\n")
	for _, c := range groupCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

func cmdGroup(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		groupUsage(a.stderr)
		return usageError{errors.New("missing group command")}
	}
	name, rest := args[0], args[1:]
	if name == "help" || name == "-h" || name == "--help" {
		groupUsage(a.stdout)
		return flag.ErrHelp
	}
	i := slices.IndexFunc(groupCommands(), func(c command) bool { return c.name == name })
	if i < 0 {
		return usageError{fmt.Errorf("unknown group command %q (try parley group help)", name)}
	}
	return groupCommands()[i].run(ctx, a, rest)
}

// usernames strips the optional "@" of usernames on the command line
// (`parley group invite G @bob` and `... bob` are the same).
func usernames(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, s := range args {
		u := strings.TrimPrefix(s, "@")
		if u == "" {
			return nil, usageError{fmt.Errorf("empty username %q", s)}
		}
		out = append(out, u)
	}
	return out, nil
}

func groupCreate(ctx context.Context, a *app, args []string) error {
	fs := a.flags("group create", "<name> [user...]")
	pos, err := parseArgs(fs, args, 1, -1, "group name")
	if err != nil {
		return err
	}
	users, err := usernames(pos[1:])
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		cv, err := c.CreateGroup(ctx, pos[0], users...)
		if err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, cv.ID)
		return nil
	})
}

func groupInvite(ctx context.Context, a *app, args []string) error {
	fs := a.flags("group invite", "<group> <user...>")
	pos, err := parseArgs(fs, args, 2, -1, "group and users")
	if err != nil {
		return err
	}
	users, err := usernames(pos[1:])
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		if _, err := c.Invite(ctx, pos[0], users...); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "invited %s to %s\n", strings.Join(users, ", "), pos[0])
		return nil
	})
}

func groupJoin(ctx context.Context, a *app, args []string) error {
	fs := a.flags("group join", "<group>")
	pos, err := parseArgs(fs, args, 1, 1, "group")
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		cv, err := c.JoinGroup(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "joined %s (%s)\n", cv.ID, cv.Title)
		return nil
	})
}

func groupLeave(ctx context.Context, a *app, args []string) error {
	fs := a.flags("group leave", "<group>")
	pos, err := parseArgs(fs, args, 1, 1, "group")
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		if err := c.LeaveGroup(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "left %s\n", pos[0])
		return nil
	})
}

func groupRemove(ctx context.Context, a *app, args []string) error {
	fs := a.flags("group remove", "<group> <user>")
	pos, err := parseArgs(fs, args, 2, 2, "group and user")
	if err != nil {
		return err
	}
	users, err := usernames(pos[1:])
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		if err := c.RemoveMember(ctx, pos[0], users[0]); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "removed %s from %s\n", users[0], pos[0])
		return nil
	})
}

// groupRename takes the name as one argument or several joined by spaces
// (`parley group rename G New Name`).
func groupRename(ctx context.Context, a *app, args []string) error {
	fs := a.flags("group rename", "<group> <name...>")
	pos, err := parseArgs(fs, args, 2, -1, "group and name")
	if err != nil {
		return err
	}
	name := strings.Join(pos[1:], " ")
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		cv, err := c.RenameGroup(ctx, pos[0], name)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "renamed %s to %s\n", cv.ID, cv.Title)
		return nil
	})
}

// memberRole is how members and --json describe a member's standing.
func memberRole(m parley.Member) string {
	switch {
	case m.Owner:
		return "owner"
	case m.Invited:
		return "invited"
	}
	return "member"
}

func groupMembers(ctx context.Context, a *app, args []string) error {
	fs := a.flags("group members", "<group>")
	asJSON := fs.Bool("json", false, "print a JSON array of {user_id, username, role} (role: owner, member or invited)")
	pos, err := parseArgs(fs, args, 1, 1, "group")
	if err != nil {
		return err
	}
	return sessionArgs(ctx, a, func(ctx context.Context, c *parley.Client) error {
		ms, err := c.Members(ctx, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			type jsonMember struct {
				UserID   string `json:"user_id"`
				Username string `json:"username"`
				Role     string `json:"role"`
			}
			out := make([]jsonMember, 0, len(ms))
			for _, m := range ms {
				out = append(out, jsonMember{m.UserID, m.Username, memberRole(m)})
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		for _, m := range ms {
			fmt.Fprintf(tw, "%s\t%s\n", m.Username, memberRole(m))
		}
		return tw.Flush()
	})
}
