using System.Management.Automation;
using LoraPS.Generation;
using LoraPS.Models;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Generates text with a causal language model, one result object per prompt.</summary>
/// <remarks>
/// <para>
/// Invoke-LoraGenerate continues each prompt with the model, with Hugging Face generate()'s semantics: greedy
/// decoding by default (-Temperature 0); with a positive -Temperature, tokens are sampled after top-k and top-p
/// filtering, reproducibly when -Seed is given. Generation stops at the model's end-of-sequence token, at any
/// -StopTokenId or -StopSequence, at -MaxNewTokens, or at the model's context length. The KV cache is on: each
/// step feeds only the new token.
/// </para>
/// <para>
/// Each result has the prompt, the completion, the full text, token counts, why it stopped, the elapsed time and
/// tokens per second. Prompts can come from the pipeline. An empty prompt starts from the BOS token alone.
/// Ctrl+C stops generation and returns what was generated so far.
/// </para>
/// </remarks>
/// <example>Let the bundled model tell a story
/// <code>$model = Import-LoraModel
/// Invoke-LoraGenerate -Model $model -Prompt 'Once upon a time' -MaxNewTokens 80</code>
/// <para>Greedy decoding; prints the completion, the token count and tokens per second.</para>
/// </example>
/// <example>Sample several prompts reproducibly
/// <code>'Lily and Tom', 'The little dog' | Invoke-LoraGenerate -Model $model -Temperature 0.8 -TopP 0.9 -Seed 42</code>
/// <para>Each prompt from the pipeline gives one result; the same seed gives the same text.</para>
/// </example>
/// <example>End a llama2.c story where the model starts the next one
/// <code>Invoke-LoraGenerate -Model $model -Prompt '' -MaxNewTokens 400 -StopTokenId 1 | ForEach-Object Text</code>
/// <para>stories260K begins each story with &lt;s&gt; (id 1) instead of emitting &lt;/s&gt;, so id 1 marks the end.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "LoraGenerate")]
[OutputType(typeof(GenerationResult))]
public sealed class InvokeLoraGenerateCommand : LoraCmdlet
{
    /// <summary>The causal language model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The text to continue; several prompts give several results. Empty starts from the BOS token.</summary>
    [Parameter(Position = 1, ValueFromPipeline = true)]
    [AllowEmptyString]
    public string[] Prompt { get; set; } = { "" };

    /// <summary>At most this many new tokens per prompt (default 128).</summary>
    [Parameter]
    [ValidateRange(0, 1_000_000)]
    public int MaxNewTokens { get; set; } = 128;

    /// <summary>0 (default) is greedy decoding; higher values sample more freely.</summary>
    [Parameter]
    [ValidateRange(0.0, 100.0)]
    public double Temperature { get; set; }

    /// <summary>Sample only among the k most likely tokens; 0 (default) = no limit.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int TopK { get; set; }

    /// <summary>Sample only among the most likely tokens whose probabilities add up to p; 1 (default) = no limit.</summary>
    [Parameter]
    [ValidateRange(0.0, 1.0)]
    public double TopP { get; set; } = 1.0;

    /// <summary>Seed for sampling, for reproducible results.</summary>
    [Parameter]
    public long Seed { get; set; }

    /// <summary>Stop when the completion contains one of these strings; the completion is cut before it.</summary>
    [Parameter]
    public string[] StopSequence { get; set; } = Array.Empty<string>();

    /// <summary>Token ids that end generation besides the model's end-of-sequence ids.</summary>
    [Parameter]
    public int[] StopTokenId { get; set; } = Array.Empty<int>();

    /// <summary>Recompute the whole sequence at every step instead of using the KV cache (slow; for comparisons).</summary>
    [Parameter]
    public SwitchParameter NoKvCache { get; set; }

    protected override void ProcessRecord()
    {
        var sampling = new SamplingOptions
        {
            Temperature = Temperature, TopK = TopK, TopP = TopP,
            Seed = MyInvocation.BoundParameters.ContainsKey(nameof(Seed)) ? Seed : null,
        };
        foreach (var prompt in Prompt)
        {
            var request = new GenerationRequest
            {
                Prompt = prompt ?? "", MaxNewTokens = MaxNewTokens, Sampling = sampling, UseKvCache = !NoKvCache,
                StopSequences = StopSequence, StopTokenIds = StopTokenId,
            };
            using var progress = CreateProgress<int>($"Generating with {Model.Name}",
                n => new ProgressUpdate($"{n}/{MaxNewTokens} tokens", MaxNewTokens > 0 ? 100 * n / MaxNewTokens : -1));
            var result = RunEngine(token => TextGenerator.Generate(Model.Network, Model.Tokenizer, request, token, progress.Report), Model);
            if (result.FinishReason == FinishReason.Cancelled)
            {
                WriteObject(result);
                throw new PipelineStoppedException();
            }
            WriteObject(result);
        }
    }
}
