// A node:test reporter that prints, after the run, each failing test with its file and error — so the
// last lines of a long CI log name what failed (the TAP stream on stdout stays as it is). Used by
// `npm test` as a second reporter on stderr.
interface FailEvent {
  type: string;
  data: {
    name?: string;
    file?: string;
    nesting?: number;
    details?: { error?: { message?: string; failureType?: string; cause?: unknown } };
  };
}

type FailError = NonNullable<NonNullable<FailEvent['data']['details']>['error']>;

function describeError(error: FailError | undefined): string {
  if (!error) return '';
  const cause = error.cause as { message?: string; stack?: string } | string | undefined;
  const text = typeof cause === 'string' ? cause : (cause?.stack ?? cause?.message ?? error.message ?? '');
  return text
    .split('\n')
    .slice(0, 12)
    .map((l) => `      ${l}`)
    .join('\n');
}

export default async function* failures(source: AsyncIterable<FailEvent>): AsyncGenerator<string> {
  const failed: string[] = [];
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const { name, file, details } = event.data;
    // a suite that failed only because a test inside it failed adds nothing
    if (details?.error?.failureType === 'subtestsFailed') continue;
    failed.push(`  ✖ ${file ?? '?'}\n    ${name ?? '?'}\n${describeError(details?.error)}`);
  }
  if (failed.length > 0) yield `\n== failing tests (${failed.length}):\n${failed.join('\n')}\n`;
  else yield '\n== no failing tests\n';
}
