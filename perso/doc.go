// Package perso reads operators' personalisation data — SIM-vendor output
// files (.out), CSV exports, Parquet and Arrow IPC — validates every record
// and streams the good ones as Apache Arrow record batches, never loading a
// whole file. It also writes the same schema (CSV, .out, Parquet, Arrow) and
// generates realistic test data.
//
// # Reading
//
//	r, format, err := perso.Open("batch.out", perso.Options{
//		Rules:     perso.Rules{MCC: "234", MNC: "15"},
//		Rejects:   rejectWriter,     // CSV or JSON Lines report
//		Decrypter: pool,             // hsmpool.Pool, for transport-encrypted Ki/OPc
//		MaxRejects: 1000,
//	})
//	for {
//		rec, err := r.Next(ctx)      // io.EOF after the last batch
//		...
//		rec.Release()                // wipes the batch's secret buffers
//	}
//
// NewCSVReader, NewOutReader, NewParquetReader, NewArrowReader (IPC stream)
// and NewArrowFileReader (IPC file) build a Reader for one format; Open
// detects the format from the content and the file name.
//
// # Batch schema
//
// Every batch has the schema Layout.Schema() (stable column names, see the
// Col* constants):
//
//	iccid             utf8                       not null  18-20 digits, valid Luhn digit
//	imsi              utf8                       not null  6-15 digits
//	ki                fixed_size_binary(16|32)   not null  secret
//	opc               fixed_size_binary(16|32)   nullable  secret; derived from op when absent (Milenage)
//	op                fixed_size_binary(16|32)   nullable  secret
//	algorithm         uint8                      not null  SAIP algorithmID: 1 Milenage, 2 TUAK, 3 test
//	pin1, puk1,
//	pin2, puk2, adm1  fixed_size_binary(8)       nullable  secret; the card value: ASCII digits padded
//	                                                       with FF (adm1 may also be 8 binary bytes)
//	msisdn, smsc, spn utf8                       nullable
//	profile_name, service_provider,
//	profile_type, profile_class  utf8            nullable  free metadata
//	kic<N>, kid<N>, kik<N>  fixed_size_binary(16|24|32)  nullable  secret; one triple per OTA key
//	                                                       version N present in the input
//
// esim.CodeText turns a pin/puk/adm column value back into its digits (or
// 16 upper-case hex digits for a binary ADM key); the column values are
// already the card form template.Values takes.
//
// The widths of ki/opc/op (16 by default, 32 for TUAK-256 and TOPc) and of
// the OTA keys are fixed per input by Options.Layout; a value of another
// length is rejected. Input column names are matched case-insensitively,
// ignoring '_', '-', '.' and spaces, with the usual aliases (K, EKI, PIN,
// PUK, ADM, KIC_1, ...); unknown columns are ignored and listed by
// Reader.IgnoredColumns. Secrets in text formats are hex; in Parquet and
// Arrow a binary column holds raw bytes and a string column hex.
//
// # Validation and rejects
//
// A row that fails any check never reaches a batch; each problem becomes a
// Reject (file, line, column, value class, reason) sent to Options.Rejects.
// The value class describes the shape ("19 digits", "31 hex chars",
// "5 bytes, invalid UTF-8"), never the value, so reports, logs and errors
// carry no secret. Checks: digits/hex/lengths of every field, the ICCID's
// Luhn digit, IMSI prefix against Rules.MCC/MNC, ICCID/IMSI ranges
// (Rules, or a .out header's IMSI, Ser_nb and Quantity), duplicate ICCID or
// IMSI within the input (against the records already accepted), the
// column count of each line, a truncated last line, invalid UTF-8 in text
// columns, and a .out Quantity that differs from its data lines.
// Options.MaxRejects and MaxRejectRate abort the whole input with
// ErrRejectLimit. The Validator type applies the same record checks to
// single Records.
//
// Duplicate detection keeps the accepted ICCIDs and IMSIs in compressed
// integer sets (roaring-style: sorted arrays turning into bitmaps), so a
// file of consecutive numbers costs about one bit per record and memory
// stays flat for tens of millions of records.
//
// # Transport keys
//
// Ki, OPc and OP may arrive encrypted under a transport key identified by
// number N (HSM label "transport-N", see TransportKeyLabel) with
// AES-128-ECB, AES-128-CBC (zero IV), 3DES-ECB or 3DES-CBC: from a .out
// header (Transport_key, Transport_alg), Parquet/Arrow metadata written by
// perso, or Options.Transport (whose Columns may add OTA key columns such
// as kic1 to the default ki/opc/op). Decryption goes through the
// TransportDecrypter interface (hsmpool.Pool implements it), so the key
// never leaves the HSM.
//
// Decrypting per record through an HSM would cost one round trip per value.
// The Reader instead collects a batch's ciphertexts column by column in one
// contiguous buffer and makes ONE DecryptTransport call per encrypted column
// per batch (e.g. 2 calls for 8192 records with ki and opc). For ECB that is
// exactly the per-value result. CBC values are encrypted one by one with a
// zero IV; decrypting their concatenation in one chained call yields each
// value's first block XORed with the previous value's last ciphertext block,
// which the reader XORs back out. The returned plaintext is copied into the
// batch's buffers and wiped; OPc is derived from OP after decryption. With
// Options.KeepEncrypted the ciphertext stays in the batch (for checks
// without an HSM) and the schema metadata names the key.
//
// SoftwareTransport is a TransportDecrypter with keys in process memory, for
// development and tests only.
//
// # Secrets in memory
//
// Secret (the type of Record's key fields) redacts itself in every fmt verb,
// JSON, text and slog output. The secret columns of a batch are allocated
// through a zeroing allocator: Release of the Arrow record wipes them, and
// a rejected row's slots are wiped at once. The generator and writers wipe
// their scratch buffers. Buffers owned by the Go runtime or by third-party
// libraries (bufio and Parquet page buffers holding the input text, the AES
// key schedule) are not under perso's control and are left to the GC.
//
// # Untrusted input
//
// CSV and .out parsing is perso's own code (fuzzed). Parquet and Arrow IPC
// are decoded by parquet-go and arrow/go, which trust lengths in the file:
// perso turns their panics on malformed input into errors and caps Arrow
// buffer allocations (512 MiB), but a crafted Arrow IPC schema can still
// make arrow/go allocate without bound. Treat Arrow IPC as an internal
// format; operators' files should come as CSV, .out or Parquet.
//
// # Writing and test data
//
// NewCSVWriter, NewOutWriter, NewParquetWriter, NewArrowWriter and
// NewArrowFileWriter write batches of the perso schema; NewWriter picks one
// by Format. Generator (used by `perso testdata perso`) produces consecutive
// ICCIDs with correct check digits, consecutive IMSIs, crypto/rand Ki,
// OPc = AES_Ki(OP) xor OP, random PIN/PUK/ADM digits and OTA keys, optionally
// encrypted under a software transport key. Builder and RecordAt convert
// between Records and batches.
package perso
