// Package engine will hold the batch pipeline behind `perso run`: bounded
// stages from perso records through template.Plan.Apply, bpp.Protect and
// hsmpool key protection into the store, with checkpoints and a report.
// It is built once the core libraries are proven byte-exact.
package engine
