using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using LoraPS.Quantization;

namespace LoraPS.Module.Completers;

/// <summary>Tab completion for -Quantize: nf4, nf4-dq, fp4, fp4-dq, int8.</summary>
public sealed class QuantizationFormatCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters) =>
        QuantizationOptions.Names
            .Where(n => n.StartsWith(wordToComplete ?? "", StringComparison.OrdinalIgnoreCase))
            .Select(n => new CompletionResult(n, n, CompletionResultType.ParameterValue, n));
}
