using System.Management.Automation;
using LoraPS.Module.Infrastructure;
using LoraPS.Runtime;

namespace LoraPS.Module.Commands;

/// <summary>Shows the versions, threads, CPU features and memory of the LoraPS runtime in this process.</summary>
/// <remarks>
/// <para>
/// Get-LoraRuntime loads libtorch (if no other LoraPS command has yet) and reports one LoraRuntime object: the
/// LoraPS, TorchSharp and libtorch versions, how many threads torch uses, whether CUDA is available, the CPU model
/// and its SIMD features, the peak and current memory of the process and the folder the module was loaded from.
/// </para>
/// <para>
/// Bf16FastPath tells whether the CPU multiplies bfloat16 natively (AVX512_BF16 or AMX-BF16). Where it is false,
/// bf16 halves memory but runs slower than fp32, because libtorch converts every bf16 operation through fp32.
/// PeakMemoryBytes is the high-water mark of resident memory (VmHWM on Linux), the number to watch when sizing
/// a fine-tuning run.
/// </para>
/// </remarks>
/// <example>Show the runtime
/// <code>Get-LoraRuntime</code>
/// <para>Prints a one-row table with the LoraPS, TorchSharp and libtorch versions, torch threads, bf16 support and peak memory.</para>
/// </example>
/// <example>Show every property
/// <code>Get-LoraRuntime | Format-List</code>
/// <para>Lists all properties, including the CPU features and the module folder.</para>
/// </example>
/// <example>Check bf16 before choosing a precision
/// <code>if ((Get-LoraRuntime).Bf16FastPath) { $dtype = 'bfloat16' } else { $dtype = 'float32' }</code>
/// <para>Picks bf16 only on CPUs that compute it natively.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "LoraRuntime")]
[OutputType(typeof(RuntimeInfo))]
public sealed class GetLoraRuntimeCommand : LoraCmdlet
{
    protected override void EndProcessing()
    {
        string? moduleFolder = MyInvocation.MyCommand.Module?.ModuleBase;
        try
        {
            WriteObject(RuntimeInspector.Inspect(moduleFolder));
        }
        catch (InvalidOperationException e)
        {
            ThrowTerminating(ErrorIds.TorchUnavailable, ErrorCategory.ResourceUnavailable, e.Message, moduleFolder, e);
        }
    }
}
