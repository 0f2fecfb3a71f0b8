/**
 * A small streaming CSV parser (RFC 4180): quoted fields may hold commas, quotes
 * written as "" and line breaks; LF, CRLF and CR line ends; a UTF-8 BOM is
 * dropped; blank lines are skipped. Small enough not to need a dependency.
 */
import { DataError } from '../../core/errors.js';

export interface CsvRecord {
  fields: string[];
  /** 1-based line on which the record starts. */
  line: number;
}

const State = { FieldStart: 0, Unquoted: 1, Quoted: 2, QuoteInQuoted: 3 } as const;
type StateValue = (typeof State)[keyof typeof State];

export async function* parseCsv(chunks: AsyncIterable<string> | Iterable<string>, file?: string): AsyncGenerator<CsvRecord> {
  let state: StateValue = State.FieldStart;
  let field = '';
  let fields: string[] = [];
  let line = 1;
  let recordLine = 1;
  let quoteLine = 1;
  let skipLf = false;
  let first = true;
  /** Whether the current record has any content (to skip blank lines). */
  let started = false;

  const endRecord = (): CsvRecord | undefined => {
    fields.push(field);
    const rec = started ? { fields, line: recordLine } : undefined;
    fields = [];
    field = '';
    started = false;
    state = State.FieldStart;
    return rec;
  };

  for await (let chunk of chunks as AsyncIterable<string>) {
    if (first) {
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      first = chunk.length === 0;
    }
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i];
      if (skipLf) {
        skipLf = false;
        if (ch === '\n') continue;
      }
      if (!started && state === State.FieldStart && fields.length === 0) recordLine = line;
      switch (state) {
        case State.Quoted:
          if (ch === '"') state = State.QuoteInQuoted;
          else {
            if (ch === '\n') line++;
            field += ch;
          }
          continue;
        case State.QuoteInQuoted:
          if (ch === '"') { field += '"'; state = State.Quoted; continue; }
          if (ch !== ',' && ch !== '\n' && ch !== '\r') {
            throw new DataError(`unexpected ${JSON.stringify(ch)} after a closing quote`, {
              file, row: line, hint: 'Inside a quoted field, write a quote as ""',
            });
          }
          state = State.Unquoted;
          break; // handle the separator below
        default:
          break;
      }
      if (ch === ',') {
        started = true;
        fields.push(field);
        field = '';
        state = State.FieldStart;
      } else if (ch === '\n' || ch === '\r') {
        line++;
        if (ch === '\r') skipLf = true;
        const rec = endRecord();
        if (rec) yield rec;
      } else if (ch === '"' && state === State.FieldStart) {
        started = true;
        quoteLine = line;
        state = State.Quoted;
      } else {
        started = true;
        field += ch;
        state = State.Unquoted;
      }
    }
  }
  if (state === State.Quoted) {
    throw new DataError('a quoted field is never closed', { file, row: quoteLine, hint: 'Check the quotes on that line' });
  }
  const rec = endRecord();
  if (rec) yield rec;
}
