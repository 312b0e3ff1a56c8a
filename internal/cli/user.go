package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/api"
)

func userCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage users (admins)",
	}
	var account string
	var admin bool
	var uid, gid uint32
	add := &cobra.Command{
		Use:   "add NAME --account ACCOUNT [--admin] [--uid N] [--gid N]",
		Short: "Create a user and print its token",
		Long: `Creates a user and prints its bearer token once, on a line "token: ...";
store it (e.g. in a file named by token_file in the user's client.toml).
The uid and gid jobs run as default to the server's choice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if account == "" {
				return fmt.Errorf("--account is required")
			}
			req := api.UserAddRequest{Name: args[0], Account: account, Admin: admin}
			if cmd.Flags().Changed("uid") {
				req.UID = &uid
			}
			if cmd.Flags().Changed("gid") {
				req.GID = &gid
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				resp, err := c.AddUser(ctx, req)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				fmt.Fprint(e.stdout, formatUserAdded(resp))
				fmt.Fprintln(e.stderr, "The token is shown only once: store it now.")
				return nil
			})
		},
	}
	add.Flags().StringVar(&account, "account", "", "the user's default account (required)")
	add.Flags().BoolVar(&admin, "admin", false, "make the user an administrator")
	add.Flags().Uint32Var(&uid, "uid", 0, "Unix uid the user's jobs run as")
	add.Flags().Uint32Var(&gid, "gid", 0, "Unix gid the user's jobs run as")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				users, err := c.Users(ctx)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				if asJSON {
					if users == nil {
						users = []api.User{}
					}
					b, err := json.MarshalIndent(users, "", "  ")
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "%s\n", b)
					return nil
				}
				fmt.Fprint(e.stdout, formatUsers(users))
				return nil
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the users as JSON")
	cmd.AddCommand(add, list)
	return cmd
}

func formatUserAdded(r *api.UserAddResponse) string {
	u := r.User
	role := ""
	if u.Admin {
		role = ", administrator"
	}
	return fmt.Sprintf("User %s added: uid %d, gid %d, account %s%s\ntoken: %s\n",
		u.Name, u.UID, u.GID, u.DefaultAccount, role, r.Token)
}

func formatUsers(users []api.User) string {
	users = slices.Clone(users)
	slices.SortFunc(users, func(a, b api.User) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUID\tGID\tDEFAULT_ACCOUNT\tACCOUNTS\tADMIN")
	for _, u := range users {
		admin := "no"
		if u.Admin {
			admin = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", u.Name, u.UID, u.GID, u.DefaultAccount, strings.Join(u.Accounts, ","), admin)
	}
	tw.Flush()
	return trimLines(b.String())
}
