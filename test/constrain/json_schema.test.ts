/**
 * jsonSchemaToGbnf / jsonObjectGbnf / choiceToGbnf, checked with the independent GBNF recognizer
 * (test/helpers/gbnf_check.ts) and ajv: random schemas of the supported subset (fast-check) x
 * random instances valid per ajv (compact and indented JSON) are accepted by the grammar, and
 * strings sampled from the grammar parse and validate with ajv. Schemas outside the subset are an
 * E_ARG naming the keyword and its JSON pointer.
 */
import Ajv from 'ajv';
import fc from 'fast-check';

import { choiceToGbnf } from '../../lib/constrain/choice';
import { jsonObjectGbnf } from '../../lib/constrain/json_any';
import { jsonSchemaToGbnf } from '../../lib/constrain/json_schema';
import { SimbaError } from '../../lib/errors';
import { mulberry32 } from '../../lib/generate/sampler';
import { newAjv } from '../helpers/json_validate';
import { rootArb, type Schema } from '../helpers/constraint_arbs';
import { parseGbnf } from '../helpers/gbnf_check';
import { expectArgError } from '../helpers/util';

describe('jsonSchemaToGbnf', () => {
  let ajv: Ajv;
  beforeAll(() => {
    ajv = newAjv();
  });

  test('random schemas: valid instances are accepted, sampled strings parse and validate', () => {
    fc.assert(
      fc.property(rootArb, fc.integer({ min: 1, max: 2 ** 31 - 1 }), (sx, seed) => {
        const validate = ajv.compile(sx.schema);
        const g = parseGbnf(jsonSchemaToGbnf(sx.schema));
        const rng = mulberry32(seed);
        for (let i = 0; i < 6; i++) {
          const inst = sx.gen(rng);
          expect({ inst, valid: validate(inst) }).toEqual({ inst, valid: true }); // the test's own sampler is right
          for (const text of [JSON.stringify(inst), JSON.stringify(inst, null, 2)])
            expect({ text, accepted: g.accepts(text) }).toEqual({ text, accepted: true });
          const s = g.sample(rng);
          let parsed: unknown;
          expect(() => (parsed = JSON.parse(s))).not.toThrow();
          expect({ s, valid: validate(parsed), errors: validate.errors ?? null }).toEqual({ s, valid: true, errors: null });
        }
      }),
      { numRuns: 200, seed: 29 },
    );
  });

  test('the grammar refuses what the schema refuses', () => {
    const schema = {
      type: 'object',
      properties: {
        n: { type: 'integer', minimum: 7, maximum: 123 },
        s: { type: ['string', 'null'], enum: ['a', null] },
        when: { type: 'string', format: 'date-time' },
        list: { type: 'array', items: { type: 'boolean' }, minItems: 1, maxItems: 2 },
      },
      required: ['n', 'list'],
      additionalProperties: false,
    };
    const g = parseGbnf(jsonSchemaToGbnf(schema));
    expect(g.accepts('{"n":7,"list":[true]}')).toBe(true);
    expect(g.accepts('{"n": 123, "s": null, "when": "2024-02-28T23:59:59.5+01:00", "list": [false, true]}')).toBe(true);
    for (const bad of [
      '{"n":6,"list":[true]}', // below minimum
      '{"n":124,"list":[true]}', // above maximum
      '{"n":07,"list":[true]}', // leading zero
      '{"n":7,"list":[]}', // minItems
      '{"n":7,"list":[true,true,true]}', // maxItems
      '{"list":[true],"n":7}', // declared order
      '{"n":7}', // required
      '{"n":7,"list":[true],"x":1}', // additional property
      '{"n":7,"s":"b","list":[true]}', // enum
      '{"n":7,"when":"2024-02-30T00:00:00Z","list":[true]}', // no such day
      '{"n":7,"list":[true]} ', // trailing whitespace
    ])
      expect({ bad, accepted: g.accepts(bad) }).toEqual({ bad, accepted: false });
  });

  test('$ref / $defs with recursion', () => {
    const schema = {
      $defs: {
        node: {
          type: 'object',
          properties: { value: { type: 'integer' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } },
          required: ['value', 'children'],
          additionalProperties: false,
        },
      },
      $ref: '#/$defs/node',
    };
    const g = parseGbnf(jsonSchemaToGbnf(schema));
    const validate = newAjv().compile(schema);
    const tree = {
      value: 1,
      children: [
        { value: 2, children: [] },
        { value: 3, children: [{ value: 4, children: [] }] },
      ],
    };
    expect(validate(tree)).toBe(true);
    expect(g.accepts(JSON.stringify(tree))).toBe(true);
    expect(g.accepts('{"value":1,"children":[{"value":2}]}')).toBe(false);
    const rng = mulberry32(5);
    for (let i = 0; i < 20; i++) expect(validate(JSON.parse(g.sample(rng)))).toBe(true);
  });

  test('whitespace policy: one space or a newline and up to 20 spaces between tokens, none around', () => {
    const g = parseGbnf(
      jsonSchemaToGbnf({ type: 'object', properties: { a: { type: 'array', items: { type: 'integer' } } }, required: ['a'] }),
    );
    expect(g.accepts('{"a":[1,2]}')).toBe(true);
    expect(g.accepts('{ "a" : [ 1 , 2 ] }')).toBe(true);
    expect(g.accepts(`{\n${' '.repeat(20)}"a": [1]\n}`)).toBe(true);
    expect(g.accepts(`{\n${' '.repeat(21)}"a": [1]\n}`)).toBe(false);
    expect(g.accepts('{  "a":[1]}')).toBe(false);
    expect(g.accepts(' {"a":[1]}')).toBe(false);
  });

  test.each([
    [{ type: 'string', minLength: 1, format: 'email' }, /at \/format: the format "email" is not supported/],
    [
      { type: 'object', properties: { a: { type: 'string', not: {} } } },
      /at \/properties\/a\/not: the keyword 'not' is not supported/,
    ],
    [{ type: 'object', properties: { 'a/b': { oneOf: [] } } }, /at \/properties\/a~1b\/oneOf: the keyword 'oneOf'/],
    [{ type: 'object', patternProperties: {} }, /at \/patternProperties: the keyword 'patternProperties'/],
    [{ type: 'array', items: [{ type: 'string' }] }, /at \/items: 'items' as an array/],
    [{ type: 'object', properties: {}, required: ['x'] }, /at \/required: requires "x"/],
    [{ type: 'object', additionalProperties: { type: 'string' } }, /at \/additionalProperties/],
    [{ type: 'strin' }, /at \/type: unknown type "strin"/],
    [{ type: 'integer', minimum: 5, maximum: 4 }, /no integer within the bounds/],
    [{ type: 'number', minimum: 0.2, maximum: 0.7 }, /no number within the bounds/],
    [{ $ref: '#/$defs/missing' }, /at \/\$ref: '\$ref' "#\/\$defs\/missing" names no schema/],
    [{ $ref: 'http://example.com/s.json' }, /is not supported \(only "#"/],
    [{ type: 'array', maxItems: 5000 }, /at \/maxItems: 'maxItems' must be an integer in \[0, 1000\]/],
    [{ type: 'string', pattern: '(?=a)' }, /pattern at \/pattern.*lookahead/],
    [{ type: 'string', pattern: '^a|b$' }, /top-level '\|'/],
    [{ type: 'string', maxLength: 3, minimum: 1 }, /'minimum' applies to type number/],
    [false, /the schema false matches nothing/],
    [
      { $defs: { a: { anyOf: [{ type: 'null' }, { $ref: '#/$defs/a' }] } }, $ref: '#/$defs/a' },
      /at \/\$defs\/a\/anyOf\/1\/\$ref: .*refers back to itself/,
    ],
    [{ anyOf: [{ type: 'null' }, { $ref: '#' }] }, /at \/anyOf\/1\/\$ref: '\$ref' "#" refers back to itself/],
    ['x', /a schema must be an object, got the string 'x'/],
  ])('%j is an E_ARG naming the keyword and where', (schema, msg) => {
    expectArgError(() => jsonSchemaToGbnf(schema), msg);
  });

  test('size bounds: deep nesting and huge grammars are refused with a clear error', () => {
    let deep: Schema = { type: 'null' };
    for (let i = 0; i < 40; i++) deep = { type: 'array', items: deep };
    expectArgError(() => jsonSchemaToGbnf(deep), /nested deeper than 32 levels/);
    const wide = {
      type: 'object',
      properties: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`p${i}`, { type: 'integer', minimum: i }])),
    };
    expectArgError(() => jsonSchemaToGbnf(wide), /more than 4096 rules/);
  });

  test('fuzzed schemas: a grammar or an E_ARG, never another error', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (s) => {
        try {
          parseGbnf(jsonSchemaToGbnf(s));
        } catch (e) {
          expect(e).toBeInstanceOf(SimbaError);
          expect((e as SimbaError).code).toBe('E_ARG');
        }
      }),
      { numRuns: 500, seed: 3 },
    );
  });
});

describe('jsonObjectGbnf and choiceToGbnf', () => {
  test('json_object: any JSON object, nothing else', () => {
    const g = parseGbnf(jsonObjectGbnf());
    for (const x of [{}, { a: [1, { b: null }], 'c"': 'é\n' }, { n: -0.5e-3 }])
      expect(g.accepts(JSON.stringify(x, null, 1))).toBe(true);
    for (const bad of ['[]', '1', '"x"', '{"a":}', '{"a":1,}', '{a:1}']) expect(g.accepts(bad)).toBe(false);
    const rng = mulberry32(9);
    for (let i = 0; i < 50; i++) {
      const x: unknown = JSON.parse(g.sample(rng));
      expect(typeof x === 'object' && x !== null && !Array.isArray(x)).toBe(true);
    }
  });

  test('choice: exactly one of the strings', () => {
    const g = parseGbnf(choiceToGbnf(['yes', 'no', 'ma"ybe\n']));
    expect(['yes', 'no', 'ma"ybe\n', 'yesno', 'ye', ''].map((s) => g.accepts(s))).toEqual([
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
    expectArgError(() => choiceToGbnf([]), /choice must be an array of 1 to 1000 strings/);
    expectArgError(() => choiceToGbnf(['a', 3]), /choice\[1\] must be a non-empty string, got the number 3/);
  });
});
