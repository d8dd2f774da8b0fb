// Package engine is the batch pipeline behind `perso run`: an operator's
// input file and a profile template in, protected profiles in the store out,
// resumable and exactly once.
//
// # Shape
//
// Run first surveys the input (survey.go): its SHA-256, and one validating
// pass that counts the records, finds every reject (reader checks and the
// template's own) and sends them to Spec.Rejects. The batch record is then
// created, with one River job per chunk of ChunkSize good records, in one
// transaction; or, when the batch exists, checked against the input, the
// template and the profile type (ErrBatchMismatch).
//
// River (package jobs) hands this process the batch's chunk jobs; each Work
// call becomes a request to the pipeline, and the pipeline (pipeline.go)
// is one function wiring small stages, each with one run(ctx, in, out):
//
//	read → validate → personalise+protect → seal → material → rows → sync → checkpoint
//
// read streams the input again (perso readers → Arrow batches) and cuts the
// requested chunks out of it; validate turns rows into template.Values;
// personalise+protect applies the template.Plan into the goroutine's own
// buffer and runs bpp on it at once, under a fresh PPK per profile, into the
// chunk's segment arena; seal wraps the PPKs under the batch's HSM data key
// (one HSM operation per batch); material writes a group of chunks'
// protected material (store.WriteMaterial: on SQLite the segment file and
// its index, durable) and returns their arenas; rows writes the next
// group's rows and completes their jobs in the same transaction
// (store.WriteBatchesUnsynced, jobs.CompleteTx) while the previous group's
// material is written; sync makes a committed group durable (store.DB.Sync)
// while rows commits the next; checkpoint counts, reports progress and
// answers the Work call. Buffers and arenas come from bounded pools, so
// memory stays flat whatever the input size; errgroup ends every stage on
// the first error.
//
// # Exactly once
//
// A chunk is stored if and only if its job completes: both happen in one
// database transaction. A crash, kill -9, Ctrl-C or HSM fault loses at
// most the chunks in flight, whose jobs stay unfinished; the re-run
// (Config.Exclusive) reclaims them at once and carries on. ICCIDs held by
// another batch are conflicts, never overwritten.
//
// The per-record work calls the libraries (perso, template, bpp, hsmpool,
// store) and nothing else: no format or crypto code lives here.
package engine
