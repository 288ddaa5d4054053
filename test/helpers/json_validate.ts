/**
 * ajv for the structured-output tests, with the one format the converters support: RFC 3339
 * `date-time` (calendar-checked: days per month, leap years; hours 00-23, minutes and seconds 00-59).
 *
 * @example
 *   const validate = newAjv().compile(schema);
 *   validate(JSON.parse(text));
 */
import Ajv from 'ajv';

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))$/;

export function isDateTime(s: string): boolean {
  const m = DATE_TIME.exec(s);
  if (!m) return false;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1];
  const zoneOk = m[9] === undefined || (Number(m[9]) <= 23 && Number(m[10]) <= 59);
  return days !== undefined && d >= 1 && d <= days && h <= 23 && mi <= 59 && sec <= 59 && zoneOk;
}

export function newAjv(): Ajv {
  const ajv = new Ajv({ strict: true, allErrors: false });
  ajv.addFormat('date-time', { type: 'string', validate: isDateTime });
  return ajv;
}
