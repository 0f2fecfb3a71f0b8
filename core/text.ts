/** Escaping for the text formats the project writes itself (SVG overlays and charts, the HTML report, terminals). */

// Control characters (C0 but tab and newline, DEL, C1): an ESC in a class name would
// otherwise drive a terminal (colours, cursor moves, title changes), and XML forbids most of them.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Text with its control characters shown as \xNN escapes. */
export function showControls(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Text safe inside XML/SVG/HTML element content and attribute values. */
export function escapeXml(text: string): string {
  return showControls(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}
