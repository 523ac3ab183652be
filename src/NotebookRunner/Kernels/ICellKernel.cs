using LoraPS.NotebookRunner.Documents;

namespace LoraPS.NotebookRunner.Kernels;

/// <summary>Runs the cells of one language for one notebook, keeping state between them.</summary>
public interface ICellKernel : IDisposable
{
    /// <summary>Runs <paramref name="code"/>, writing into <paramref name="outputs"/>. Returns null on success, else what failed.</summary>
    string? Run(string code, CellOutputs outputs);
}
