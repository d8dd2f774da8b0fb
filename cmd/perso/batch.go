package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/store"
)

func init() { register(newBatchCmd) }

func newBatchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch",
		Short: "List and show the batches in the store",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List every batch with its counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), a, func(db *store.DB) error {
				return batchList(cmd.Context(), db, cmd.OutOrStdout(), asJSON)
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON (the keys of perso run's report)")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one batch: the counts of perso run's report, and its workers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd.Context(), a, func(db *store.DB) error {
				r, err := engine.BatchReport(cmd.Context(), db, args[0])
				if errors.Is(err, store.ErrNotFound) {
					return usagef("batch show: no batch %q in the store (perso batch list shows them)", args[0])
				}
				if err != nil {
					return err
				}
				if asJSON {
					return writeBatchJSON(cmd.OutOrStdout(), r)
				}
				printRunReport(cmd.OutOrStdout(), r, nil)
				return nil
			})
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON (the keys of perso run's report)")
	for _, c := range []*cobra.Command{list, show} {
		c.Flags().String("store.driver", "", "store driver: sqlite or postgres (default from config: store.driver)")
		c.Flags().String("store.dsn", "", "store DSN (default from config: store.dsn)")
		cmd.AddCommand(c)
	}
	return cmd
}

func withStore(ctx context.Context, a *app, f func(*store.DB) error) error {
	dsn := a.v.GetString("store.dsn")
	db, err := store.Open(ctx, a.v.GetString("store.driver"), dsn)
	if err != nil {
		return fmt.Errorf("opening the store %s: %w", redactDSN(dsn), scrubDSN(err, dsn))
	}
	defer db.Close()
	return f(db)
}

func batchList(ctx context.Context, db *store.DB, w io.Writer, asJSON bool) error {
	bs, err := db.ListBatches(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		out := []*engine.Report{}
		for _, b := range bs {
			r, err := engine.BatchReport(ctx, db, b.ID)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return writeBatchJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// The counts of perso run's report, in its order (records_read,
	// stored, rejected, duplicates, conflicts, chunks_done/chunks).
	fmt.Fprintln(tw, "BATCH\tPROFILE TYPE\tRECORDS\tSTORED\tREJECTED\tDUPLICATES\tCONFLICTS\tCHUNKS\tCREATED")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d/%d\t%s\n", b.ID, b.ProfileType, b.Records, b.Profiles, b.Rejected,
			b.Duplicates, b.Conflicts, b.ChunksDone, b.Chunks, b.CreatedAt.Format("2006-01-02 15:04:05Z"))
	}
	return tw.Flush()
}

func writeBatchJSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}
