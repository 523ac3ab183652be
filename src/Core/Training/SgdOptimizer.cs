using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>
/// torch.optim.SGD: <c>d = g + wd·p</c>; with momentum μ, <c>b ← d</c> on the first step, then
/// <c>b ← μ·b + (1 − dampening)·d</c>, and <c>d = b</c> (or <c>d + μ·b</c> with Nesterov); <c>p ← p − lr·d</c>.
/// State per parameter: <c>momentum_buffer</c> (only with momentum).
/// </summary>
public sealed class SgdOptimizer : Optimizer
{
    public SgdOptimizer(IReadOnlyList<(string Name, Parameter Parameter)> parameters, double learningRate = 1e-3,
        double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : base(parameters, learningRate)
    {
        (Momentum, Dampening, WeightDecay, Nesterov) = (momentum, dampening, weightDecay, nesterov);
        new OptimizerOptions { Kind = OptimizerKind.Sgd, LearningRate = learningRate, Momentum = momentum, Dampening = dampening, WeightDecay = weightDecay, Nesterov = nesterov }.Validate();
    }

    public double Momentum { get; }
    public double Dampening { get; }
    public double WeightDecay { get; }
    public bool Nesterov { get; }

    private protected override void Update(string name, Parameter p, Tensor grad, long step)
    {
        var d = WeightDecay != 0 ? grad.add(p, alpha: WeightDecay) : grad;
        if (Momentum != 0)
        {
            var buffer = GetState(name, "momentum_buffer");
            if (buffer is null)
            {
                // torch: the first buffer is a copy of d, without dampening.
                buffer = SetState(name, "momentum_buffer", d.clone().detach());
            }
            else
            {
                buffer.mul_(Momentum).add_(d, alpha: 1 - Dampening);
            }
            d = Nesterov ? d.add(buffer, alpha: Momentum) : buffer;
        }
        p.add_(d, alpha: -LearningRate);
    }
}
