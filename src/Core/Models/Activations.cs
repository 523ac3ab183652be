using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>Maps config <c>hidden_act</c> / <c>activation_function</c> names to functions, as transformers' ACT2FN does.</summary>
internal static class Activations
{
    public static Func<Tensor, Tensor> Get(string name, string? configPath = null) => name switch {
        "silu" or "swish" => x => nn.functional.silu(x),
        // BERT's "gelu" is the exact erf form.
        "gelu" => x => nn.functional.gelu(x),
        // GPT-2's gelu_new is the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => x => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => x => nn.functional.relu(x),
        "tanh" => x => x.tanh(),
        _ => throw new ModelConfigException(configPath ?? "config.json",
            $"'{configPath ?? "config.json"}': activation '{name}' is not supported (supported: silu, swish, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, tanh)."),
    };
}
