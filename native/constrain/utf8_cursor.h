// utf8_cursor.h — UTF-8 decoding one byte at a time, for text that arrives in token pieces: a
// token may end inside a character. Only well-formed UTF-8 (no overlong forms, no surrogates, at
// most U+10FFFF) gets through; for an incomplete character it gives the range of code points that
// its remaining bytes could still make.
#pragma once
#include <cstdint>

namespace simba {
namespace constrain {

struct Utf8Cursor {
  uint32_t value = 0;  // the bits of the character so far
  uint8_t need = 0;    // continuation bytes still expected (0: between characters)
  uint8_t len = 0;     // bytes of the character being read

  // One code point, or a range of possible ones, after a byte.
  enum Result { kInvalid, kComplete, kPartial };

  // Reads byte b. kComplete: the character is `value`; kPartial: it lies in [lo, hi] (one range,
  // surrogates left to the caller via split_surrogates).
  Result push(uint8_t b, uint32_t& lo, uint32_t& hi) {
    if (need == 0) {
      if (b < 0x80) {
        value = b;
        len = 1;
        return kComplete;
      }
      if (b >= 0xC2 && b <= 0xDF) {
        value = b & 0x1F, need = 1, len = 2;
      } else if (b >= 0xE0 && b <= 0xEF) {
        value = b & 0x0F, need = 2, len = 3;
      } else if (b >= 0xF0 && b <= 0xF4) {
        value = b & 0x07, need = 3, len = 4;
      } else {
        return kInvalid;
      }
    } else {
      if ((b & 0xC0) != 0x80) return kInvalid;
      value = value << 6 | (b & 0x3F);
      need--;
    }
    const uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    const uint32_t max = len == 2 ? 0x7FF : len == 3 ? 0xFFFF : 0x10FFFF;
    lo = value << (6 * need);
    hi = lo | ((1u << (6 * need)) - 1);
    if (lo < min) lo = min;
    if (hi > max) hi = max;
    // the surrogates D800..DFFF are not characters
    if (lo >= 0xD800 && lo <= 0xDFFF) lo = 0xE000;
    if (hi >= 0xD800 && hi <= 0xDFFF) hi = 0xD7FF;
    if (lo > hi) return kInvalid;
    if (need == 0) return kComplete;
    return kPartial;
  }

  // Identifies the incomplete character (0 between characters).
  uint32_t key() const { return need == 0 ? 0 : value | (uint32_t)need << 21 | (uint32_t)len << 24; }
};

}  // namespace constrain
}  // namespace simba
