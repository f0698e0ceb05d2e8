/** C0 and C1 control characters (NUL among them, which PostgreSQL refuses in text): never in a stored name, text or query. */
export const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;
