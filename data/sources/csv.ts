/**
 * CSV records for manifests, streamed through csv-parse (RFC 4180: quoted fields
 * may hold commas, quotes written as "" and line breaks; LF, CRLF and CR line
 * ends, mixed in one file; a UTF-8 BOM is dropped; blank lines are skipped).
 * A maintained parser rather than our own: CSV's corner cases are many and it
 * has met them. This file adds what ingest needs on top: the line each record
 * starts on, and errors that name the file and line.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CsvError, parse, type Options } from 'csv-parse';
import { DataError } from '../../core/errors.js';

export interface CsvRecord {
  fields: string[];
  /** 1-based line on which the record starts. */
  line: number;
}

/** Line breaks inside a record's fields: how far its first line lies above its last. */
function breaksIn(fields: string[]): number {
  let n = 0;
  for (const f of fields) n += f.match(/\r\n|\r|\n/g)?.length ?? 0;
  return n;
}

/** csv-parse's complaint as ours: what is wrong and what to do, at the record's line. */
function csvDataError(err: CsvError, file: string | undefined, row: number): DataError {
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return new DataError('a quoted field is never closed', { file, row, hint: 'Check the quotes on that line' });
    case 'CSV_INVALID_CLOSING_QUOTE':
      return new DataError('unexpected text after a closing quote', { file, row, hint: 'Inside a quoted field, write a quote as ""' });
    default:
      return new DataError(`not valid CSV: ${err.message}`, { file, row, hint: 'Check the file is CSV (comma-separated, quotes doubled inside quoted fields)' });
  }
}

export async function* parseCsv(chunks: AsyncIterable<string> | Iterable<string>, file?: string): AsyncGenerator<CsvRecord> {
  // The line after the last record parsed: where a failing record starts (blank lines aside). Set as
  // csv-parse parses, not as records are read, since an error drops the records not yet read.
  let next = 1;
  const options: Options<CsvRecord, string[]> = {
    bom: true,
    skip_empty_lines: true,
    relax_column_count: true,
    record_delimiter: ['\r\n', '\n', '\r'],
    on_record: (fields, context) => {
      next = context.lines + 1;
      return { fields, line: context.lines - breaksIn(fields) };
    },
  };
  // parse()'s overloads type on_record only together with `columns`; the options are checked as Options<CsvRecord> above.
  const parser = parse(options as unknown as Options);
  // pipeline() feeds the parser with back-pressure, and stopping early or failing destroys both sides
  // (the file closes); its errors surface where the records are read, below.
  pipeline(Readable.from(chunks), parser).catch(() => undefined);
  try {
    yield* parser as AsyncIterable<CsvRecord>;
  } catch (err) {
    throw err instanceof CsvError ? csvDataError(err, file, next) : err;
  } finally {
    parser.destroy();
  }
}
