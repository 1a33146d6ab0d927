using Weft.Lab;

namespace Weft.Lab.Tests;

/// <summary>A fact that needs root and working network namespaces; reported as skipped (with the reason) when <see cref="NatLab.CanRun"/> is false.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!NatLab.CanRun(out string why))
        {
            Skip = "needs root: " + why;
        }
    }
}
