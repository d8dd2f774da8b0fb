package perso

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"
)

// Format is an input/output file format.
type Format string

// Formats.
const (
	FormatCSV       Format = "csv"
	FormatOut       Format = "out"
	FormatParquet   Format = "parquet"
	FormatArrow     Format = "arrow"      // Arrow IPC stream
	FormatArrowFile Format = "arrow-file" // Arrow IPC file
)

// ParseFormat accepts csv, out, parquet, arrow (stream) and arrow-file.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case FormatCSV, FormatOut, FormatParquet, FormatArrow, FormatArrowFile:
		return f, nil
	case "tsv":
		return FormatCSV, nil
	case "ipc", "arrows":
		return FormatArrow, nil
	}
	return "", fmt.Errorf("unknown format %q (want csv, out, parquet, arrow or arrow-file)", s)
}

// DetectFormat guesses a file's format from its first bytes, then its name.
func DetectFormat(name string, head []byte) Format {
	switch {
	case bytes.HasPrefix(head, []byte("PAR1")):
		return FormatParquet
	case bytes.HasPrefix(head, []byte("ARROW1")):
		return FormatArrowFile
	case bytes.HasPrefix(head, []byte{0xFF, 0xFF, 0xFF, 0xFF}):
		return FormatArrow
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".out", ".inp":
		return FormatOut
	case ".parquet", ".pq":
		return FormatParquet
	case ".arrow", ".arrows", ".ipc":
		return FormatArrow
	}
	if t := bytes.TrimLeft(head, " \t\r\n"); len(t) > 0 && t[0] == '*' {
		return FormatOut
	}
	return FormatCSV
}

// Open opens a file in any supported format (detected from its content and
// name) and returns a Reader that closes the file on Close. o.File defaults
// to the path's base name.
func Open(path string, o Options) (*Reader, Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	format := DetectFormat(path, head[:n])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, "", err
	}
	if o.File == "" {
		o.File = filepath.Base(path)
	}
	if strings.EqualFold(filepath.Ext(path), ".tsv") && o.Delimiter == 0 {
		o.Delimiter = '\t'
	}
	r, err := OpenFormat(f, format, o)
	if err != nil {
		f.Close()
		return nil, "", err
	}
	return r, format, nil
}

// OpenFormat reads f in the given format; the Reader closes f on Close.
func OpenFormat(f *os.File, format Format, o Options) (*Reader, error) {
	switch format {
	case FormatCSV:
		return NewCSVReader(f, o)
	case FormatOut:
		return NewOutReader(f, o)
	case FormatParquet:
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		return NewParquetReader(f, st.Size(), o)
	case FormatArrow:
		return NewArrowReader(f, o)
	case FormatArrowFile:
		return NewArrowFileReader(f, o)
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

// NewWriter returns a Writer for the format. The .out format needs its
// header (with Quantity); the Arrow file format needs an io.WriteSeeker.
func NewWriter(w io.Writer, format Format, schema *arrow.Schema, out OutFileHeader) (Writer, error) {
	switch format {
	case FormatCSV:
		return NewCSVWriter(w, schema, ',')
	case FormatOut:
		return NewOutWriter(w, schema, out)
	case FormatParquet:
		return NewParquetWriter(w, schema)
	case FormatArrow:
		return NewArrowWriter(w, schema), nil
	case FormatArrowFile:
		ws, ok := w.(io.WriteSeeker)
		if !ok {
			return nil, fmt.Errorf("the Arrow file format needs a seekable output")
		}
		return NewArrowFileWriter(ws, schema)
	}
	return nil, fmt.Errorf("unknown format %q", format)
}
