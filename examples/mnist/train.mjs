// Trains a small castling ViT on the digits of the `mnist` package with the public API, step by
// step: the loop that `castling-vit train mnist` runs (with more care) in lib/train/digits.ts.
//
//   npm install && node examples/mnist/train.mjs [epochs]
import { AdamW, Tensor, VisionTransformer, presets } from 'castling-vit';
import { DIGIT_LABELS, DIGIT_SIZE, digitsPreprocessing, evaluateDigits, loadDigits } from 'castling-vit/digits';

const epochs = Number(process.argv[2] ?? 3);
const batchSize = 64;
const { train, test } = loadDigits(); // first 80% of each digit to train, the rest held out

const model = VisionTransformer.create({ ...presets.digits, attention: 'castling', seed: 1 });
// Saved with the model, so that `castling-vit predict digits-example.safetensors digit.png` reads
// image files the way the training read the digits.
model.preprocessing = digitsPreprocessing;
model.labels = DIGIT_LABELS;
const stepsPerEpoch = Math.floor(train.count / batchSize);
const optimizer = new AdamW(model.parameters(), {
  lr: 2e-3,
  weightDecay: 0.05,
  warmupSteps: stepsPerEpoch,
  totalSteps: epochs * stepsPerEpoch,
  maxGradNorm: 1,
});

/** 0 .. n-1 in random order (Fisher-Yates: a sort with a random comparator is biased). */
function shuffled(n) {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

const pixels = DIGIT_SIZE * DIGIT_SIZE;
const [mean] = digitsPreprocessing.mean;
const [std] = digitsPreprocessing.std;
const normalise = (v) => (v - mean) / std;
for (let epoch = 1; epoch <= epochs; epoch++) {
  const order = shuffled(train.count);
  let loss = 0;
  for (let step = 0; step < stepsPerEpoch; step++) {
    const images = new Float32Array(batchSize * pixels);
    const labels = [];
    for (let b = 0; b < batchSize; b++) {
      const index = order[step * batchSize + b];
      images.set(train.images.subarray(index * pixels, (index + 1) * pixels).map(normalise), b * pixels);
      labels.push(train.labels[index]);
    }
    const batch = Tensor.fromArray(images, [batchSize, 1, DIGIT_SIZE, DIGIT_SIZE]);
    // The castling schedule fades the auxiliary softmax branch out by 85% of training.
    const result = await model.trainStep(batch, labels, optimizer, { labelSmoothing: 0.1, castling: { start: 0.5, end: 0.85 } });
    batch.dispose();
    loss += result.loss;
  }
  console.log(`epoch ${epoch}: loss ${(loss / stepsPerEpoch).toFixed(4)}, held-out accuracy ${(100 * (await evaluateDigits(model, test))).toFixed(2)}%`);
}

model.castle(); // the switch: linear-angular attention only from now on
console.log(`after the switch: ${(100 * (await evaluateDigits(model, test))).toFixed(2)}%`);
await model.save('digits-example.safetensors');
console.log('saved digits-example.safetensors');
