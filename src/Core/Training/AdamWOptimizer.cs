using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>
/// torch.optim.AdamW (Loshchilov &amp; Hutter's decoupled weight decay), exactly torch's single-tensor path:
/// <code>
/// p ← p·(1 − lr·wd)
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
/// </code>
/// State per parameter: <c>exp_avg</c> (m), <c>exp_avg_sq</c> (v) and its step t.
/// </summary>
public sealed class AdamWOptimizer : Optimizer
{
    public AdamWOptimizer(IReadOnlyList<(string Name, Parameter Parameter)> parameters, double learningRate = 1e-3,
        double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0.01)
        : base(parameters, learningRate)
    {
        (Beta1, Beta2, Epsilon, WeightDecay) = (beta1, beta2, epsilon, weightDecay);
        new OptimizerOptions { LearningRate = learningRate, Beta1 = beta1, Beta2 = beta2, Epsilon = epsilon, WeightDecay = weightDecay }.Validate();
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }

    private protected override void Update(string name, Parameter p, Tensor grad, long step)
    {
        var expAvg = GetState(name, "exp_avg") ?? SetState(name, "exp_avg", zeros_like(p));
        var expAvgSq = GetState(name, "exp_avg_sq") ?? SetState(name, "exp_avg_sq", zeros_like(p));
        Apply(p, grad, expAvg, expAvgSq, step, LearningRate, Beta1, Beta2, Epsilon, WeightDecay);
    }

    /// <summary>One AdamW update of <paramref name="p"/> with its moments <paramref name="expAvg"/> and <paramref name="expAvgSq"/>, in place.</summary>
    internal static void Apply(Tensor p, Tensor grad, Tensor expAvg, Tensor expAvgSq, long step,
        double lr, double beta1, double beta2, double epsilon, double weightDecay)
    {
        // The same op sequence as torch 1.13 _single_tensor_adamw (torch 2.x's lerp_ for m can differ by 1 ulp).
        p.mul_(1 - lr * weightDecay);
        expAvg.mul_(beta1).add_(grad, alpha: 1 - beta1);
        expAvgSq.mul_(beta2).addcmul_(grad, grad, value: 1 - beta2);
        // Bias corrections in float64 from the step count, as Python computes them.
        double biasCorrection1 = 1 - Math.Pow(beta1, step);
        double biasCorrection2Sqrt = Math.Sqrt(1 - Math.Pow(beta2, step));
        double stepSize = lr / biasCorrection1;
        var denom = (expAvgSq.sqrt() / biasCorrection2Sqrt).add_(epsilon);
        p.addcdiv_(expAvg, denom, value: -stepSize);
    }
}
