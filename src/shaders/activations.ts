/**
 * Activation functions as WGSL snippets, shared by the matmul epilogue and the elementwise op.
 * Names follow the HF configs (`hidden_act` / `activation_function`).
 * @module
 */
import { WebcapError } from "../errors.ts";

/** Activations known to the kernels. */
export type Activation = "none" | "gelu" | "gelu_new" | "quick_gelu" | "relu" | "tanh" | "sigmoid";

/** Map an HF config activation name to an {@link Activation}. */
export function activationFromConfig(name: string, where: string): Activation {
  const map: Record<string, Activation> = {
    gelu: "gelu",
    gelu_new: "gelu_new",
    gelu_pytorch_tanh: "gelu_new",
    gelu_fast: "gelu_new",
    quick_gelu: "quick_gelu",
    relu: "relu",
    tanh: "tanh",
    sigmoid: "sigmoid",
  };
  const act = map[name];
  if (!act) throw new WebcapError("BAD_CONFIG", `${where}: unsupported activation "${name}"`);
  return act;
}

/**
 * WGSL functions `erf_f32(x)` and `act(x)` for one activation. erf uses the Numerical Recipes
 * Chebyshev form of erfc (fractional error below 1.2e-7).
 */
export function activationWgsl(act: Activation): string {
  const body: Record<Activation, string> = {
    none: "return x;",
    gelu: "return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752));",
    gelu_new:
      "let u = 0.7978845608028654 * (x + 0.044715 * x * x * x); return 0.5 * x * (1.0 + tanh_f32(u));",
    quick_gelu: "return x * sigmoid_f32(1.702 * x);",
    relu: "return max(x, 0.0);",
    tanh: "return tanh_f32(x);",
    sigmoid: "return sigmoid_f32(x);",
  };
  return `
fn erf_f32(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
fn tanh_f32(x: f32) -> f32 {
  // tanh via exp of a non-positive argument: exact limits, no overflow
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}
fn sigmoid_f32(x: f32) -> f32 {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
fn act(x: f32) -> f32 { ${body[act]} }
`;
}

/** WGSL `act_grad(x)`: the derivative of {@link activationWgsl}'s `act` at `x` (needs its helpers). */
export function activationGradWgsl(act: Activation): string {
  const body: Record<Activation, string> = {
    none: "return 1.0;",
    gelu: "return 0.5 * (1.0 + erf_f32(x * 0.70710678118654752)) + " +
      "x * 0.3989422804014327 * exp(-0.5 * x * x);",
    gelu_new: "let c = 0.7978845608028654; let t = tanh_f32(c * (x + 0.044715 * x * x * x)); " +
      "return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 0.134145 * x * x);",
    quick_gelu: "let s = sigmoid_f32(1.702 * x); return s + 1.702 * x * s * (1.0 - s);",
    relu: "return select(0.0, 1.0, x > 0.0);",
    tanh: "let t = tanh_f32(x); return 1.0 - t * t;",
    sigmoid: "let s = sigmoid_f32(x); return s * (1.0 - s);",
  };
  return `fn act_grad(x: f32) -> f32 { ${body[act]} }\n`;
}
